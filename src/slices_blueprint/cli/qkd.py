"""``slices-blueprint qkd ...``: QKD networks of the experiment, from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from slices_blueprint.cli.errors import fail, load_document
from slices_blueprint.cli.http import JsonOutput, ServiceUrl, Token, request_json, resolve_token
from slices_blueprint.cli.output import console
from slices_blueprint.cli.reservations import reservation_note
from slices_blueprint.core.api_paths import BI_PREFIX

if TYPE_CHECKING:
    from rich.table import Column

app = typer.Typer(no_args_is_help=True, help="QKD networks: emulated links and ETSI GS QKD 014 KMEs.")
link_app = typer.Typer(no_args_is_help=True, help="A network's links.")
app.add_typer(link_app, name="link")
NetworkRef = Annotated[str, typer.Argument(help="The network's id or name.")]


def _networks(url: str) -> str:
    return f"{url.rstrip('/')}{BI_PREFIX}/qkd-networks"


def _resolve(url: str, token: str, ref: str) -> str:
    if ref.startswith("qkdnet_"):
        return ref
    matches = [n["id"] for n in request_json("GET", _networks(url), token) if n["name"] == ref]
    if not matches:
        raise fail(f"no live QKD network named {ref!r} (see `slices-blueprint qkd list`)")
    return matches[0]


def _whole(header: str) -> Column:
    """A column never wrapped (ids and URLs are copied from it); the others wrap instead."""
    from rich.table import Column

    return Column(header, no_wrap=True)


def _show(network: dict[str, Any], as_json: bool) -> None:
    from rich.table import Table

    if as_json:
        typer.echo(json.dumps(network, indent=2))
        return
    console().print(f"[bold]{network['name']}[/bold] {network['id']}  {network['status']}, "
                  f"expires {network['expires_at']}")
    nodes = Table(_whole("node"), _whole("KME id"), _whole("KME URL"), "SAEs", title="KMEs (ETSI GS QKD 014)")
    for node in network["nodes"]:
        saes = ", ".join(s["sae_id"] for s in network["saes"] if s["node"] == node["name"])
        nodes.add_row(node["name"], node["kme_id"], node["kme_url"], saes)
    links = Table("link", "state", "key rate (b/s)", "QBER", "stored keys", "delivered", "reason",
                  title="Links (emulated: key material from the OS CSPRNG)")
    for link in network["links"]:
        links.add_row(link["name"], link["state"], f"{link['secret_key_rate_bps']:,.0f}", f"{link['qber']:.2%}",
                      f"{link['stored_key_count']:,}/{link['max_key_count']:,}", f"{link['delivered_keys']:,}",
                      link["state_reason"] or "")
    console().print(nodes, links)


def _load_description(path: Path) -> dict[str, Any]:
    """The network description in ``path``; a file that cannot be read, or is not a YAML or
    JSON mapping, is one error line naming the flag."""
    description = load_document(path, "--from-file")
    if not isinstance(description, dict):
        raise fail(f"--from-file {path}: expected a network description (a mapping with name, nodes "
                   f"and links), found {type(description).__name__}")
    return description


@app.command("create")
def create(
    url: ServiceUrl,
    from_file: Annotated[Path, typer.Option("--from-file", help="The network description (YAML or JSON).")],
    token: Token = None, as_json: JsonOutput = False,
) -> None:
    """Create a QKD network in the experiment from its description."""
    network = request_json("POST", _networks(url), resolve_token(token), json=_load_description(from_file))
    _show(network, as_json)


@app.command("list")
def list_(url: ServiceUrl, token: Token = None,
          all_: Annotated[bool, typer.Option("--all", help="Include deleted.")] = False,
          as_json: JsonOutput = False) -> None:
    """The experiment's QKD networks."""
    rows = request_json("GET", _networks(url), resolve_token(token), params={"include_deleted": all_})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(_whole("id"), _whole("name"), "status", "nodes", "links generating", "expires_at", "reservation",
                  title="QKD networks")
    for n in rows:
        generating = sum(link["state"] == "generating" for link in n["links"])
        table.add_row(n["id"], n["name"], n["status"], str(len(n["nodes"])),
                      f"{generating}/{len(n['links'])}", n["expires_at"], reservation_note(n))
    console().print(table)


@app.command("show")
def show(network: NetworkRef, url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """A network's KMEs, SAEs and links with their live key rate, QBER and pools."""
    tok = resolve_token(token)
    _show(request_json("GET", f"{_networks(url)}/{_resolve(url, tok, network)}", tok), as_json)


@app.command("delete")
def delete(network: NetworkRef, url: ServiceUrl, token: Token = None, as_json: JsonOutput = False) -> None:
    """Delete a network: its KMEs stop and undelivered keys are erased."""
    tok = resolve_token(token)
    _show(request_json("DELETE", f"{_networks(url)}/{_resolve(url, tok, network)}", tok), as_json)


@link_app.command("set")
def link_set(
    network: NetworkRef,
    link: Annotated[str, typer.Argument(help="<node>-<node>")],
    url: ServiceUrl, token: Token = None,
    length_km: Annotated[float | None, typer.Option(help="Fibre length, km.")] = None,
    attenuation_db_per_km: Annotated[float | None, typer.Option(help="Fibre loss, dB/km.")] = None,
    detector_efficiency: Annotated[float | None, typer.Option(help="0-1.")] = None,
    dark_count_probability: Annotated[float | None, typer.Option(help="Per gate.")] = None,
    misalignment_error: Annotated[float | None, typer.Option(help="0-0.5.")] = None,
    repetition_rate_hz: Annotated[float | None, typer.Option(help="Source pulses per second.")] = None,
    protocol: Annotated[str | None, typer.Option(help="bb84-decoy or bb84.")] = None,
    eavesdropper: Annotated[float | None, typer.Option(help="Fraction of qubits intercepted (0-1).")] = None,
    as_json: JsonOutput = False,
) -> None:
    """Change a link's parameters; its key rate and QBER follow within seconds."""
    changes = {k: v for k, v in {
        "length_km": length_km, "attenuation_db_per_km": attenuation_db_per_km,
        "detector_efficiency": detector_efficiency, "dark_count_probability": dark_count_probability,
        "misalignment_error": misalignment_error, "repetition_rate_hz": repetition_rate_hz,
        "protocol": protocol, "eavesdropper": eavesdropper}.items() if v is not None}
    if not changes:
        raise fail("give at least one parameter to change, e.g. --eavesdropper 0.5")
    tok = resolve_token(token)
    _show(request_json("PATCH", f"{_networks(url)}/{_resolve(url, tok, network)}/links/{link}", tok,
                       json=changes), as_json)


@app.command("credentials")
def credentials(
    network: NetworkRef,
    sae: Annotated[str, typer.Argument(help="The SAE_ID.")],
    url: ServiceUrl, token: Token = None,
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Directory to write them to.")] = Path("."),
) -> None:
    """Download an SAE's certificate, private key (once only), CA and KME URL into --out."""
    tok = resolve_token(token)
    key = out / f"{sae}.key"
    try:  # before the download: the private key is answered once only, so it must not be lost
        out.mkdir(parents=True, exist_ok=True)
        if key.exists():
            raise fail(f"--out {out}: {key.name} exists; move it away or choose another directory")
    except OSError as exc:
        raise fail(f"--out {out}: {exc.strerror or exc}") from None
    creds = request_json("POST", f"{_networks(url)}/{_resolve(url, tok, network)}/saes/{sae}/credentials", tok)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(creds["private_key_pem"])
    files = {f"{sae}.crt": creds["certificate_pem"], "ca.crt": creds["ca_certificate_pem"],
             "kme.env": f"KME_URL={creds['kme_url']}\nKME_ID={creds['kme_id']}\nSAE_ID={sae}\n"}
    for name, content in files.items():
        (out / name).write_text(content)
    typer.echo(f"wrote {', '.join([key.name, *files])} to {out}; KME: {creds['kme_url']}")
