"""Goldens: named arrays in one little-endian data.bin plus an index.json (format in docs/package-format.md)."""
import json
import os

import numpy as np

_DTYPES = {"float32": np.float32, "int64": np.int64, "int32": np.int32, "uint8": np.uint8}


class GoldenWriter:
    def __init__(self, folder: str):
        self.folder = folder
        self.index: dict = {}
        self.meta: dict = {}
        self.chunks: list[bytes] = []
        self.offset = 0

    def add(self, name: str, array) -> None:
        if name in self.index:
            raise ValueError(f"golden {name!r} written twice")
        if hasattr(array, "detach"):
            array = array.detach().cpu().numpy()
        array = np.ascontiguousarray(array)
        dtype = next((k for k, v in _DTYPES.items() if array.dtype == v), None)
        if dtype is None:
            raise TypeError(f"golden {name!r}: unsupported dtype {array.dtype}")
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        self.index[name] = {"dtype": dtype, "shape": list(array.shape), "offset": self.offset, "length": len(data)}
        pad = (-len(data)) % 8
        self.chunks.append(data + b"\0" * pad)
        self.offset += len(data) + pad

    def save(self) -> None:
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, "data.bin"), "wb") as f:
            for chunk in self.chunks:
                f.write(chunk)
        with open(os.path.join(self.folder, "index.json"), "w") as f:
            json.dump({"meta": self.meta, "arrays": self.index}, f, indent=1, sort_keys=True)
            f.write("\n")


def read_golden(folder: str) -> tuple[dict, dict]:
    """Returns (meta, {name: numpy array})."""
    with open(os.path.join(folder, "index.json")) as f:
        doc = json.load(f)
    with open(os.path.join(folder, "data.bin"), "rb") as f:
        blob = f.read()
    arrays = {}
    for name, e in doc["arrays"].items():
        a = np.frombuffer(blob, dtype=np.dtype(_DTYPES[e["dtype"]]).newbyteorder("<"), count=-1,
                          offset=e["offset"])[: int(np.prod(e["shape"])) if e["shape"] else 1]
        arrays[name] = a.reshape(e["shape"])
    return doc["meta"], arrays
