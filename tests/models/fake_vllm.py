"""A stand-in for the vLLM environment's interpreter in ``orchestra serve-model`` tests.

Called as ``fake_vllm.py -m vllm.entrypoints.openai.api_server --model M
--served-model-name N --host H --port P ...``, it serves the OpenAI-compatible test server on
that port and writes its process id to ``$FAKE_VLLM_PIDFILE``.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    port = args[args.index("--port") + 1]
    name = args[args.index("--served-model-name") + 1]
    Path(os.environ["FAKE_VLLM_PIDFILE"]).write_text(str(os.getpid()))
    sys.argv = ["openai_compat_server.py", port, name]
    runpy.run_path(str(Path(__file__).with_name("openai_compat_server.py")), run_name="__main__")


if __name__ == "__main__":
    main()
