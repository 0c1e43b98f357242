"""medley on Ray: `medley-ray index PATHS --db URI` indexes media across a Ray cluster with
`medley index-worker` on every node and one `medley commit` per group of finished tasks."""

from .driver import index

__all__ = ["index"]
