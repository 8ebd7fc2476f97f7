"""pycaffe's API over trainnet's own objects (``from trainnet import caffe`` where a script had
``import caffe``): a facade, no second implementation.  Filled in by issue 12."""
