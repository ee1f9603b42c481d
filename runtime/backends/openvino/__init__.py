"""OpenVINO backend: the step on OpenVINO's CPU runtime, bf16 on AMX / AVX-512 BF16 CPUs (imports openvino only when loaded)."""
