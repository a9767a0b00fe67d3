"""Splitting one extraction across processes or machines (`num_shards`, `shard_index`)."""


def check_shards(num_shards, shard_index):
    """Raise ValueError unless ``num_shards >= 1`` and ``0 <= shard_index < num_shards`` (integers)."""
    if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    if not isinstance(shard_index, int) or isinstance(shard_index, bool) or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be an integer in [0, {num_shards - 1}] for num_shards={num_shards}, "
                         f"got {shard_index!r}")
    return num_shards, shard_index
