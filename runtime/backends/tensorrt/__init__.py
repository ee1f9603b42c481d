"""Native TensorRT step backend: engine build/deserialize (loader), runner, device memory."""
