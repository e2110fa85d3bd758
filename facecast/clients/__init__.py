"""One typed client per served network, named after its definition in training/networks/: raw pixels and token
ids in, named and typed results out. Each wraps a facecast.serving.client.TritonModelClient, reads input sizes
from the served config (never hard-coded) and refuses another model's client (``_common.expect_client``)."""
