"""FirecrackerAPIContractDouble: a stand-in for the ``firecracker`` binary, NOT Firecracker.

No Firecracker binary can be installed here, so this double serves the documented API
routes on ``--api-sock`` and enforces what the documentation says of them: request bodies
(unknown fields refused, as Firecracker's deny_unknown_fields does), files that must exist,
pre-boot-only configuration, InstanceStart needing a boot source, PATCH /vm only after
boot; errors answer 400 ``{"fault_message": ...}``. Every accepted call is appended as a
JSON line to ``--log-path``; on InstanceStart it prints the guest-ready marker on stdout
(Firecracker's stdout is the guest's serial console).

Started by JailerContractDouble (``jailer_double.py``), it runs as the jailed Firecracker
would: the jail's root and uid:gid come from ``JAILER_DOUBLE_ROOT``/``_UID``/``_GID`` (it
cannot really be chrooted or drop privileges: it runs from the host's Python, as root), so
every path, the command line's and the API bodies', resolves inside that root (its working
directory), files are checked for the permissions uid:gid would need (read; read-write for
writable drives and the log), and the TAP must let uid:gid attach (its owner or group), as
Firecracker opens it without CAP_NET_ADMIN.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from slices_blueprint.agent.default_image import READY_MARKER


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MachineConfig(Strict):
    vcpu_count: int = Field(ge=1, le=32)
    mem_size_mib: int = Field(ge=1)
    smt: bool = False
    track_dirty_pages: bool = False


class BootSource(Strict):
    kernel_image_path: str
    boot_args: str | None = None
    initrd_path: str | None = None


class Drive(Strict):
    drive_id: str
    path_on_host: str
    is_root_device: bool
    is_read_only: bool = False
    partuuid: str | None = None
    cache_type: Literal["Unsafe", "Writeback"] = "Unsafe"


class NetworkInterface(Strict):
    iface_id: str
    host_dev_name: str
    guest_mac: str | None = None


class Action(Strict):
    action_type: Literal["InstanceStart", "SendCtrlAltDel", "FlushMetrics"]


class VmState(Strict):
    state: Literal["Paused", "Resumed"]


class Fault(Exception):
    pass


@dataclass(frozen=True)
class Jail:
    """Where the jailed process's ``/`` is, and the user it would run as."""

    root: Path = Path("/")
    uid: int | None = None  # None: not jailed (root may do anything)
    gid: int | None = None

    @classmethod
    def from_env(cls) -> Jail:
        if "JAILER_DOUBLE_ROOT" not in os.environ:
            return cls()
        return cls(Path(os.environ["JAILER_DOUBLE_ROOT"]), int(os.environ["JAILER_DOUBLE_UID"]),
                   int(os.environ["JAILER_DOUBLE_GID"]))

    @staticmethod
    def path(path: str) -> Path:
        """``path`` as the jailed process sees it: relative to its root, the working
        directory (which also keeps the socket's path short, as in a real chroot)."""
        return Path(path.lstrip("/") or ".")

    def allows(self, path: Path, bits: int) -> bool:
        """Whether uid:gid has the ``rwx`` ``bits`` (4, 6, ...) on ``path``."""
        if self.uid is None:
            return True
        st = path.stat()
        shift = 6 if st.st_uid == self.uid else 3 if st.st_gid == self.gid else 0
        return (st.st_mode >> shift) & bits == bits

    def may_attach(self, tap: str) -> bool:
        """Whether uid:gid may attach to the TAP without CAP_NET_ADMIN."""
        if self.uid is None:
            return True
        sys_net = Path("/sys/class/net", tap)
        if not (sys_net / "tun_flags").exists():
            return False
        return (int((sys_net / "owner").read_text()) == self.uid
                or int((sys_net / "group").read_text()) == self.gid)


def build_app(log_path: Path, jail: Jail) -> FastAPI:
    app = FastAPI()
    vm: dict[str, object] = {"started": False, "state": "Not started", "boot": None,
                             "drives": {}}

    def record(request: Request, body: BaseModel) -> Response:
        with log_path.open("a") as f:
            f.write(json.dumps({"method": request.method, "path": request.url.path,
                                "body": body.model_dump(exclude_unset=True)}) + "\n")
        return Response(status_code=204)

    def pre_boot() -> None:
        if vm["started"]:
            raise Fault("The requested operation is not supported after starting the microVM.")

    def must_open(path: str | None, bits: int = 4) -> None:
        if path is None:
            return
        if not jail.path(path).exists():
            raise Fault(f"Invalid file path: {path}")
        if not jail.allows(jail.path(path), bits):
            raise Fault(f"Permission denied (os error 13): {path}")

    @app.exception_handler(Fault)
    async def _fault(_: Request, exc: Fault) -> JSONResponse:
        return JSONResponse({"fault_message": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"fault_message": f"invalid body: {exc.errors()}"}, status_code=400)

    @app.put("/machine-config")
    async def machine_config(body: MachineConfig, request: Request) -> Response:
        pre_boot()
        return record(request, body)

    @app.put("/boot-source")
    async def boot_source(body: BootSource, request: Request) -> Response:
        pre_boot()
        must_open(body.kernel_image_path)
        must_open(body.initrd_path)
        vm["boot"] = body
        return record(request, body)

    @app.put("/drives/{drive_id}")
    async def drives(drive_id: str, body: Drive, request: Request) -> Response:
        pre_boot()
        if body.drive_id != drive_id:
            raise Fault("The id from the path does not match the id from the body!")
        must_open(body.path_on_host, 4 if body.is_read_only else 6)
        return record(request, body)

    @app.put("/network-interfaces/{iface_id}")
    async def network(iface_id: str, body: NetworkInterface, request: Request) -> Response:
        pre_boot()
        if body.iface_id != iface_id:
            raise Fault("The id from the path does not match the id from the body!")
        if not jail.may_attach(body.host_dev_name):
            raise Fault(f"Open tap device failed: {body.host_dev_name}: "
                        "Operation not permitted (os error 1)")
        return record(request, body)

    @app.put("/actions")
    async def actions(body: Action, request: Request) -> Response:
        if body.action_type == "InstanceStart":
            pre_boot()
            if vm["boot"] is None:
                raise Fault("Cannot start microvm without kernel configuration.")
            vm["started"], vm["state"] = True, "Running"
            print(READY_MARKER, flush=True)
        return record(request, body)

    @app.patch("/vm")
    async def vm_state(body: VmState, request: Request) -> Response:
        if not vm["started"]:
            raise Fault("The requested operation is not supported before starting the microVM.")
        vm["state"] = "Paused" if body.state == "Paused" else "Running"
        return record(request, body)

    @app.get("/vm/config")
    async def vm_config() -> dict[str, object]:
        return {"state": vm["state"]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-sock", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--log-path", required=True)
    for passed_by_the_jailer in ("--start-time-us", "--start-time-cpu-us",
                                 "--parent-cpu-time-us"):
        parser.add_argument(passed_by_the_jailer, type=int)
    args = parser.parse_args()
    jail = Jail.from_env()
    os.chdir(jail.root)
    log_path = jail.path(args.log_path)
    if not log_path.exists():
        raise SystemExit("Firecracker opens an existing --log-path; it does not create it")
    if not jail.allows(log_path, 6):
        raise SystemExit(f"Permission denied (os error 13): {args.log_path}")
    uvicorn.run(build_app(log_path, jail), uds=str(jail.path(args.api_sock)),
                log_level="warning")


if __name__ == "__main__":
    main()
