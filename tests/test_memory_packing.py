"""The arena packer, as a property: buffers alive at the same time never share a byte."""

from hypothesis import given, settings
from hypothesis import strategies as st

from trainnet.plan.memory import Interval, pack

intervals = st.lists(
    st.tuples(st.integers(1, 64).map(lambda n: n * 64), st.integers(0, 30), st.integers(0, 10)),
    min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(intervals)
def test_live_buffers_never_overlap_and_the_arena_holds_them(specs):
    ivs = [Interval(("buf", i), size, start, start + length) for i, (size, start, length) in enumerate(specs)]
    size = pack(ivs)
    for iv in ivs:
        assert iv.offset >= 0 and iv.offset + iv.nbytes <= size
    for a in ivs:
        for b in ivs:
            if a is b or a.end < b.start or b.end < a.start:
                continue
            assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset
    # never worse than giving every buffer its own bytes, and at least the busiest moment
    assert size <= sum(iv.nbytes for iv in ivs)
    busiest = max(sum(iv.nbytes for iv in ivs if iv.start <= t <= iv.end)
                  for t in range(0, 41))
    assert size >= busiest


@given(intervals)
def test_without_reuse_every_buffer_has_its_own_bytes(specs):
    ivs = [Interval(("buf", i), size, start, start + length) for i, (size, start, length) in enumerate(specs)]
    assert pack(ivs, reuse=False) == sum(iv.nbytes for iv in ivs)
