"""Splitting one extraction across processes or machines (`num_shards`, `shard_index`)."""


def check_shards(num_shards, shard_index):
    """Raise ValueError unless ``num_shards >= 1`` and ``0 <= shard_index < num_shards`` (integers)."""
    if not isinstance(num_shards, int) or isinstance(num_shards, bool) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    if not isinstance(shard_index, int) or isinstance(shard_index, bool) or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be an integer in [0, {num_shards - 1}] for num_shards={num_shards}, "
                         f"got {shard_index!r}")
    return num_shards, shard_index


def merge_caches(sources, dest):
    """Copy the chunk files of shard caches (`sources`: cache roots) into the cache root `dest`.

    Shards of one extraction write disjoint chunks under the same key, so the
    merged cache holds what one unsharded run would have written; a chunk
    present in two sources must be byte-identical (else ValueError naming
    both files). Returns the number of chunk files copied.
    """
    import filecmp
    import os

    from tflm.atomic import copy_atomic

    copied = 0
    for root in sources:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"shard cache {root} does not exist")
        for key in sorted(os.listdir(root)):
            src_dir = os.path.join(root, key)
            if not os.path.isdir(src_dir):
                continue
            dst_dir = os.path.join(dest, key)
            os.makedirs(dst_dir, exist_ok=True)
            for name in sorted(os.listdir(src_dir)):
                src, dst = os.path.join(src_dir, name), os.path.join(dst_dir, name)
                if not (name.startswith("chunk_") and name.endswith(".npz")) and name != "key.json":
                    continue
                if os.path.exists(dst):
                    if name.startswith("chunk_") and not filecmp.cmp(src, dst, shallow=False):
                        raise ValueError(f"shard caches disagree: {src} differs from {dst}")
                    continue
                copy_atomic(src, dst)
                copied += name.startswith("chunk_")
    return copied
