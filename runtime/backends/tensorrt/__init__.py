"""Native TensorRT step backend: engine deserialization (loader), runner, device memory."""
