import hashlib


def content_hash(data: bytes) -> str:
    """Identity of an image: SHA-256 of its bytes, hex. Same bytes, same image, wherever it lives."""
    return hashlib.sha256(data).hexdigest()
