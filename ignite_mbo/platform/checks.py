"""Checks of user input that run before anything is started or written (Ray, MLflow runs, files)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from ignite_mbo.errors import UserError
from ignite_mbo.http_deadline import redirect_refused

STORAGE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "file")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
T = TypeVar("T")
MLFLOW_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
"""A read-only MLflow REST call. ``/health`` would not do: MLflow answers it whatever the Host header,
while its host check (``--allowed-hosts``) refuses every API call of a sweep."""


def _credentials(userinfo: str) -> dict[str, str]:
    """The headers MLflow's client would send: basic auth from the environment, a bearer token, or else
    the URL's own ``user:password@`` (requests turns that into basic auth)."""
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if not (user and password) and not token and userinfo:
        user, _, password = (unquote(part) for part in userinfo.partition(":"))
    if user and password is not None:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {"Authorization": f"Bearer {token}"} if token else {}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: the credentials must not travel to a host the user did not name."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


def within(call: Callable[[], T], timeout_s: float) -> T:
    """``call()`` in a daemon thread, its result or its error, all within ``timeout_s`` in total; TimeoutError
    after that (a network call that trickles or retries defeats a per-read socket timeout)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=run, name="ignite-mbo-probe", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"no complete answer within {timeout_s:g} s")
    if "error" in outcome:
        raise cast(BaseException, outcome["error"])
    return cast(T, outcome["value"])


def _fetch(url: str, headers: dict[str, str], timeout_s: float) -> bytes:
    """The body of GET ``url``, all of it within ``timeout_s`` in total; TimeoutError after that."""
    def fetch() -> bytes:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout_s) as response:
            return cast(bytes, response.read(1_000_000))

    return within(fetch, timeout_s)


def split_url(url: str, what: str, fix: str) -> SplitResult:
    """``url``'s parts, or a one-line error naming ``what`` it is and the ``fix`` (pass 24: an unclosed IPv6
    bracket, ``http://[::1:5000``, raised a traceback)."""
    try:
        return urlsplit(url)
    except ValueError as error:
        raise UserError(f"{what} {url!r} is not a URL ({error}); {fix}") from None


def check_tracking_server(uri: str, timeout_s: float = 3.0) -> str:
    """An ``http(s)://`` MLflow server that answers a real API call completely within ``timeout_s``; else
    a one-line UserError naming the fix (``--allowed-hosts`` when MLflow refuses the address, credentials,
    the URL). A ``user:password@`` in the URL is sent as basic auth, as MLflow's client sends it."""
    url = uri.rstrip("/")
    parts = split_url(url, "tracking URI", "use http(s)://HOST:PORT of an MLflow server")
    try:
        port, port_problem = parts.port, "port 0"
    except ValueError as error:  # not a number, or out of 0-65535
        port, port_problem = 0, str(error)
    if port == 0:
        raise UserError(f"{url} names no usable port ({port_problem}); use http(s)://HOST:PORT with a port from 1 "
                        "to 65535")
    userinfo, _, host = parts.netloc.rpartition("@")
    probe = urlunsplit((parts.scheme, host, parts.path, "", "")) + MLFLOW_PROBE
    try:
        answer = _fetch(probe, _credentials(userinfo), timeout_s)
        if not isinstance(json.loads(answer or b"{}"), dict):
            raise json.JSONDecodeError("not an object", "", 0)
        return url
    except (json.JSONDecodeError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise UserError(f"{url} answers, but not as an MLflow server (its reply is not MLflow's JSON); check the "
                        "host and port of the MLflow server") from None
    except urllib.error.HTTPError as error:
        body = error.read(2000).decode(errors="replace")
        if 300 <= error.code < 400:  # the same line as for MLflow's own calls (http_deadline)
            raise UserError(str(redirect_refused(url, error.code, error.headers.get("Location")))) from None
        if error.code == 403 and "Host header" in body:
            raise UserError(f"the MLflow server at {url} refuses requests addressed to {host} (its host check); "
                            f"restart it with --allowed-hosts {host.rpartition(':')[0] or host},{host} "
                            "(docs/cluster.md)") from None
        if error.code in (401, 403):
            raise UserError(f"the MLflow server at {url} answered HTTP {error.code} (authentication); set "
                            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)") from None
        raise UserError(f"{url} answered HTTP {error.code} to an MLflow API call; check that the URL is the "
                        "MLflow server's (http://HOST:PORT, no path)") from None
    except TimeoutError:
        raise UserError(f"the MLflow server at {url} did not answer completely within {timeout_s:g} s; check "
                        "that it is up and not overloaded") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, TimeoutError):
            raise UserError(f"the MLflow server at {url} did not answer within {timeout_s:g} s; check that it is "
                            "up and not overloaded") from None
        raise UserError(f"no MLflow server answers at {url} ({reason}); start it "
                        "(mlflow server --host 127.0.0.1 --port PORT) or check the URL") from None
    except (ValueError, http.client.HTTPException) as error:
        raise UserError(f"cannot reach an MLflow server at {url} ({type(error).__name__}: {error}); check the "
                        "URL (http(s)://HOST:PORT)") from None


def check_device(device: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, and only what this torch build and machine have."""
    import torch

    if not _DEVICE.match(device):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise UserError(f"--device {device}: {build}; use --device cpu (or auto)")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible; use cuda:0..")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps: this machine and torch build have no MPS; use --device cpu (or auto)")
    return device


def writable_ancestor(path: Path) -> Path:
    """The nearest existing folder at or above ``path``; a one-line error if it is not a writable folder."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{probe} is a file, so {path} cannot be a folder; pick another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        made = "" if probe == path.absolute() else f", so {path} cannot be created"
        raise UserError(f"{probe} is not writable{made}; pick a path you can write")
    return probe


def check_printable(flag: str, value: str) -> None:
    """Refuse a path with control characters (a newline, a terminal escape): printed, they would rewrite the
    console's lines."""
    odd = next((char for char in value if not char.isprintable()), None)
    if odd is not None:
        raise UserError(f"{flag} {value!r} holds the control character {odd!r}; pick a path without one")


def check_output_dir(path: Path) -> Path:
    """The output folder, absolute: a folder or creatable, writable."""
    check_printable("--output-dir", str(path))
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", str(path)):  # file:///x (a Path keeps it as file:/x), s3://...
        raise UserError(f"--output-dir {path} is a URI; it takes a local folder (for file:///x pass /x; remote "
                        "storage goes to --storage-path)")
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} is a file; pass a folder")
    writable_ancestor(path)
    return path


def check_storage_path(storage: str) -> str:
    """Tune's storage path: a local folder (created later), returned absolute, or a URI with a scheme pyarrow
    knows. A ``file:`` URI (``file:///x``, ``file:/x``) becomes its folder, decoded as pyarrow decodes it (pass 24:
    the check saw ``a%20b`` where Tune wrote in ``a b``)."""
    check_printable("--storage-path", storage)
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:/", storage):
        writable_ancestor(Path(storage))
        return str(Path(storage).absolute())
    parts = split_url(storage, "--storage-path", "give a folder or a URI such as s3://BUCKET/PATH")
    if parts.scheme.lower() != "file":
        if parts.scheme.lower() not in STORAGE_SCHEMES or "://" not in storage or not (parts.netloc + parts.path).strip("/"):
            raise UserError(f"--storage-path {storage!r}: unsupported; use a folder, or "
                            f"{', '.join(f'{s}://' for s in STORAGE_SCHEMES)} with a path")
        return storage
    if "?" in storage or "#" in storage:  # pass 18: checked 'st?x=1/', Tune wrote in 'st/'
        raise UserError(f"--storage-path {storage!r}: a file:// URI takes no query or fragment ('?', '#'); "
                        "give the folder's path")
    if parts.netloc:  # pass 23: Tune's pyarrow refuses a host, even localhost
        raise UserError(f"--storage-path {storage!r}: a file:// URI names a folder on this machine and takes no "
                        f"host ({parts.hostname or parts.netloc.rpartition('@')[2]!r}); write file:///PATH (three "
                        "slashes), or the folder's path")
    folder = unquote(parts.path)
    check_printable("--storage-path (decoded)", folder)
    if not folder.strip("/"):
        raise UserError(f"--storage-path {storage!r}: names no folder; give the folder's path")
    writable_ancestor(Path(folder))
    return folder


def check_name(name: str) -> str:
    """An experiment or folder name: no ``.``/``..`` and no path separators."""
    if name in (".", "..") or "/" in name or "\\" in name or not name.strip():
        raise UserError(f"name {name!r} is not usable as a folder name; use letters, digits, '_', '-' and '.'")
    return name


MAX_NUM_CPUS = 65_536
"""More CPUs than a local Ray is asked to pretend it has (Ray fails to start past its resource limits)."""


def check_local_resources(cpu: float, gpu: float, num_cpus: int | None) -> None:
    """A local Ray must be able to hold one trial's resources, else the sweep would wait forever."""
    if num_cpus is not None and not 1 <= num_cpus <= MAX_NUM_CPUS:
        raise UserError(f"--num-cpus must be between 1 and {MAX_NUM_CPUS:,} (got {num_cpus:,})")
    available = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    if cpu > available:
        raise UserError(f"resources.cpu={cpu:g} per trial, but this machine's Ray has {available} CPU(s); "
                        f"lower resources.cpu or raise --num-cpus")


RAY_PROBE_TIMEOUT_S = 5.0


def check_ray_address(address: str | None) -> None:
    """A cluster address (``HOST:PORT`` or ``ray://HOST:PORT``) must accept a TCP connection within seconds;
    ``ray.init`` would otherwise retry for minutes, deaf to Ctrl-C. ``auto`` and no address are Ray's to find."""
    if not address or address in ("auto", "local"):
        return
    parts = split_url(address if "://" in address else f"tcp://{address}", "--address",
                      "pass the head's HOST:PORT or ray://HOST:PORT")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or port is None:
        raise UserError(f"--address {address!r} is not HOST:PORT or ray://HOST:PORT; pass the head's address "
                        "(e.g. 10.0.0.5:6379), 'auto' inside a Ray job, or leave it out for a local Ray")
    try:
        connection = socket.create_connection((host, port), timeout=RAY_PROBE_TIMEOUT_S)
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or type(error).__name__)
        raise UserError(f"no Ray cluster answers at {address} ({reason}); start the head (ray start --head) or "
                        "fix --address, or leave it out for a local Ray") from None
    with connection:
        if not _answers_grpc(connection):
            raise UserError(f"{address} accepts connections but does not answer as a Ray head does (nothing back "
                            f"in {RAY_PROBE_TIMEOUT_S:g} s); check that --address is the head's GCS port (6379) or "
                            "its Ray Client port (ray://HOST:10001)")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"""What a gRPC client sends first: HTTP/2's connection preface and an empty SETTINGS frame."""


def _answers_grpc(connection: socket.socket) -> bool:
    """Whether the server says anything (or hangs up) within the probe's time after HTTP/2's preface: Ray's GCS
    and Ray Client servers are gRPC, which answer with their own SETTINGS at once. A server that accepts and
    then stays silent would leave ``ray.init`` retrying for minutes; anything else is left to Ray to judge."""
    try:
        connection.sendall(HTTP2_PREFACE)
        connection.recv(1)
    except TimeoutError:
        return False
    except OSError:  # reset: a server that hung up has answered
        return True
    return True
