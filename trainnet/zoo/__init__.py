"""Model zoo: Caffe model definitions, and Caffe prototxt/caffemodel import and export."""
