"""The JSON documents a simulated CML 2.9 controller answers, shaped by CML 2.9's OpenAPI document.

Kept apart from the routing (`cml_controllers`) so that each shape can be read next to the
schema it follows (`LabResponse`, `TopologyResponse`, `ComputeHostBase`, `ComputeDiagnostics`,
`CpuHealthStats`, `LicensingStatus`, `SystemNotice`, `Error`) and checked against it in the
tests. Identifiers the spec requires to be UUID4s are derived from names with a hash, so a lab
keeps its node ids from one answer to the next.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from starlette.responses import JSONResponse

CPU_MODEL = "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz"  # an m5 metal host, as AWS runs CML
NODE_DEFINITION = "iosv"
TOKEN_LIFETIME = timedelta(hours=8)  # CML's default web session timeout
TOKEN_ISSUER = "com.cisco.cml"


def error(status: int, description: str) -> JSONResponse:
    """CML's `Error` / `ErrorResponse`: the HTTP status again as `code`, and a description."""
    return JSONResponse({"code": status, "description": description}, status_code=status)


def stable_uuid4(*parts: str) -> str:
    """A UUID4-shaped id (the spec's pattern demands version 4) that is the same for the same parts."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()[:16]
    return str(uuid.UUID(bytes=digest, version=4))


def user_id(username: str) -> str:
    return stable_uuid4("user", username)


def make_token(secret: str, username: str) -> str:
    """A JSON web token like CML's (three base64url parts): issuer, subject, issue and expiry."""
    now = datetime.now(UTC)
    claims = {
        "iss": TOKEN_ISSUER,
        "sub": user_id(username),
        "iat": int(now.timestamp()),
        "exp": int((now + TOKEN_LIFETIME).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def token_subject(secret: str, token: str) -> str | None:
    """The user id a token was issued to, or None when it is not one of ours or has expired."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=TOKEN_ISSUER)
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    return subject if isinstance(subject, str) else None


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def node_ids(controller: str, lab_id: str, count: int) -> list[str]:
    return [stable_uuid4(controller, lab_id, "node", str(i)) for i in range(count)]


def lab(
    controller: str, lab_id: str, state: str, *, owner: str, nodes: int, created: datetime
) -> dict[str, Any]:
    """`LabResponse` (required: lab_title, state, effective_permissions)."""
    return {
        "id": lab_id,
        "created": _stamp(created),
        "modified": _stamp(created),
        "lab_description": "",
        "lab_notes": "",
        "lab_title": f"Lab {lab_id[:8]}",
        "owner": user_id(owner),
        "owner_username": owner,
        "owner_fullname": owner,
        "state": state,
        "node_count": nodes,
        "link_count": max(0, nodes - 1),
        "groups": [],
        "effective_permissions": ["lab_admin", "lab_edit", "lab_exec", "lab_view"],
    }


def topology(controller: str, lab_id: str, state: str, *, owner: str, nodes: int) -> dict[str, Any]:
    """`TopologyResponse`: nodes in a line, each linked to the next by its interface 0/1."""
    ids = node_ids(controller, lab_id, nodes)
    node_docs = []
    for index, node in enumerate(ids):
        interfaces = [
            {
                "id": stable_uuid4(node, "interface", str(slot)),
                "node": node,
                "label": f"GigabitEthernet0/{slot}",
                "slot": slot,
                "type": "physical",
            }
            for slot in range(2)
        ]
        node_docs.append(
            {
                "id": node,
                "label": f"R{index}",
                "node_definition": NODE_DEFINITION,
                "x": 100 * index,
                "y": 0,
                "ram": 512,
                "cpus": 1,
                "tags": [],
                "interfaces": interfaces,
            }
        )
    links = [
        {
            "id": stable_uuid4(lab_id, "link", str(i)),
            "lab_id": lab_id,
            "label": f"R{i}-R{i + 1}",
            "state": state,
            "node_a": ids[i],
            "node_b": ids[i + 1],
            "interface_a": stable_uuid4(ids[i], "interface", "1"),
            "interface_b": stable_uuid4(ids[i + 1], "interface", "0"),
        }
        for i in range(len(ids) - 1)
    ]
    return {
        "lab": {
            "version": "0.3.0",
            "title": f"Lab {lab_id[:8]}",
            "description": "",
            "notes": "",
            "owner": user_id(owner),
        },
        "nodes": node_docs,
        "links": links,
        "annotations": [],
        "smart_annotations": [],
    }


def node(
    controller: str, lab_id: str, node_id: str, index: int, state: str, compute_id: str
) -> dict[str, Any]:
    """`Node`, as `labs/{id}/nodes?data=true` lists it."""
    running = state == "STARTED"
    return {
        "id": node_id,
        "lab_id": lab_id,
        "label": f"R{index}",
        "node_definition": NODE_DEFINITION,
        "x": 100 * index,
        "y": 0,
        "cpus": 1,
        "ram": 512,
        "tags": [],
        "state": "BOOTED" if running else state,
        "boot_progress": "Booted" if running else "Not running",
        "compute_id": compute_id if running else None,
        "resource_pool": None,
    }


def cpu_stats(count: int, percent: float) -> dict[str, Any]:
    """`CpuHealthStats` (required: model, predicted, load)."""
    load = round(count * percent / 100, 2)
    return {
        "count": count,
        "percent": percent,
        "model": CPU_MODEL,
        "predicted": count,
        "load": [load, load, load],
    }


def compute_host(
    compute_id: str,
    hostname: str,
    *,
    admission_state: str,
    connected: bool,
    nodes: list[str],
    running: int,
) -> dict[str, Any]:
    """`ComputeHostBase`, one entry of `system/compute_hosts`."""
    return {
        "id": compute_id,
        "server_address": "127.0.0.1",
        "hostname": hostname,
        "is_simulator": True,
        "is_connector": True,
        "admission_state": admission_state,
        "nodes": nodes,
        "node_counts": {
            "total_nodes": len(nodes),
            "total_orphans": 0,
            "running_nodes": running,
            "running_orphans": 0,
        },
        "is_connected": connected,
        "is_synced": connected,
    }


def compute_diagnostics(host: dict[str, Any], stats: dict[str, Any], is_controller: bool) -> dict[str, Any]:
    """`ComputeDiagnostics` (the `computes` category), built from the host and its stats."""
    connected = bool(host["is_connected"])
    return {
        "identifier": host["id"],
        "host_address": host["server_address"],
        "hostname": host["hostname"],
        "link_driver": "ovs",
        "kvm_vmx_enabled": True,
        "is_controller": is_controller,
        "is_connector": True,
        "is_simulator": True,
        "readiness": {
            "libvirt": True,
            "fabric": connected,
            "device_mux": True,
            "refplat_images_available": True,
            "docker_shim": True,
        },
        "lld_consistency": {"missing_nodes": [], "orphaned_nodes": []},
        "fabric": [],
        "statistics": stats,
        "admission_state": host["admission_state"],
    }


def licensing(registration: str, authorization: str, expires: datetime) -> dict[str, Any]:
    """`LicensingStatus`: registration and authorization with their expiry, transport with its proxy."""
    stamp = _stamp(expires)
    ssms = "https://smartreceiver.cisco.com/licservice/license"
    return {
        "registration": {
            "status": registration,
            "smart_account": "sim-account",
            "virtual_account": "sim-virtual",
            "expires": stamp if registration == "COMPLETED" else None,
        },
        "authorization": {
            "status": authorization,
            "expires": stamp if authorization == "IN_COMPLIANCE" else None,
        },
        "reservation_mode": False,
        "features": [],
        "product_license": {"active": "CML_Enterprise", "is_enterprise": True},
        "transport": {"ssms": ssms, "default_ssms": ssms, "proxy": {"server": None, "port": None}},
    }


def notice(notice_id: str, body: dict[str, Any], activated: datetime) -> dict[str, Any]:
    """`SystemNotice` from a `SystemNoticeCreate` body."""
    return {
        "id": notice_id,
        "level": body["level"],
        "label": body["label"],
        "content": body.get("content", ""),
        "enabled": body.get("enabled", True),
        "activated": _stamp(activated) if body.get("enabled", True) else None,
        "acknowledged": {},
        "groups": list(body.get("groups", [])),
    }


def diagnostics(
    category: str,
    *,
    computes: dict[str, dict[str, Any]],
    labs: dict[str, datetime],
    started: int,
    ready: bool,
    users: list[dict[str, Any]],
) -> Any:
    """The `diagnostics/{category}` answer of each category, in the shape the spec gives it."""
    if category == "computes":
        return computes
    if category == "labs":
        return {
            lab_id: {"created": _stamp(at), "allocated": True, "nodes": {}, "links": {}, "interfaces": {}}
            for lab_id, at in labs.items()
        }
    if category == "lab_events":
        return {lab_id: [] for lab_id in labs}
    if category == "user_list":
        return users
    if category in ("node_launch_queue", "node_definitions"):
        return []
    if category == "services":
        return {"dispatcher": True, "termws": True}
    if category == "licensing":
        return {"quota": None, "started": started, "user_quota": None, "user_started": started}
    if category == "startup_scheduler":
        return dict.fromkeys(
            (
                "licensing_loaded",
                "core_driver_connected",
                "node_definitions_loaded",
                "lld_connected",
                "lld_synced",
                "system_ready",
            ),
            ready,
        )
    return None


def user(username: str, admin: bool, created: datetime) -> dict[str, Any]:
    """`UserResponse`: what `virl2-client` reads to name a lab's owner."""
    return {
        "id": user_id(username),
        "username": username,
        "fullname": username,
        "description": "",
        "email": "",
        "admin": admin,
        "groups": [],
        "associations": [],
        "resource_pool": None,
        "opt_in": None,
        "created": _stamp(created),
        "modified": _stamp(created),
        "labs": [],
        "pubkey_info": None,
    }
