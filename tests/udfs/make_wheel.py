"""Writes a minimal pure-Python wheel, coiltiny 1.0 (VALUE = 42), to the
directory given: something pip installs without a package index."""
import base64
import hashlib
import os
import sys
import zipfile

files = {
    "coiltiny.py": b"VALUE = 42\n",
    "coiltiny-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: coiltiny\nVersion: 1.0\n",
    "coiltiny-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: coil-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
record.append("coiltiny-1.0.dist-info/RECORD,,")
files["coiltiny-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
path = os.path.join(sys.argv[1], "coiltiny-1.0-py3-none-any.whl")
with zipfile.ZipFile(path, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
print(path)
