"""`discover-peers`: collect candidate nodes from several sources, learn their node IDs, write `persistent-peers`.

Sources, in the order given:

- `static`: peer addresses `<node id>@<host>:<port>` used as they are (validated, not queried).
- `ec2Tags`: running instances carrying every tag (all pages of DescribeInstances, boto3 with its usual credential
  chain and `AWS_ENDPOINT_URL_EC2`); the public IP, else the private one (or the private one with `address: private`).
- `dns`: A records of `hosts` (P2P port `p2pPort`), and SRV records of `srv` (P2P port from each record, its target
  resolved to A records). A name that does not resolve is skipped with a note, not fatal.
- `kubernetes`: running pods matching `labelSelector` in `namespace` (default: the agent's own), listed through the
  agent's own Kubernetes API client and credentials (`TaskContext.kube`, the operator's connection: one access path
  for the agent and its tasks); not available in local mode.
  The agent's own pod is never a candidate. The agent's Role needs `list` on `pods`.

Every discovered candidate is asked for `/status` on `rpcPort` (`queryTimeoutSeconds` each, 16 at a time) and
becomes `<node id>@<ip>:<p2p port>`. A candidate that does not answer is skipped and listed under `skipped` in the
result. This node itself (its node_key.json) is never its own peer. Peers are de-duplicated by node ID, first found
first; `maxPeers` keeps the first N.

A source that cannot be read at all (EC2 or Kubernetes API error) fails the task, naming the source; no peers at all
fails with reason `NoPeersFound`. In both cases nothing is written. Otherwise `[p2p] persistent-peers` in
config.toml (which must exist) is replaced with the comma-joined list, keeping comments and the file's key spelling.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
from pydantic import Field, model_validator

from agent.chain.keys import node_id_from_file, node_key_path
from agent.chain.rpc import RpcClient, RpcError
from agent.chain.seiconfig import write_keys
from agent.models import TaskError, TaskType
from agent.models.params.addresses import NonEmptyStr, PeerAddress, check_host, check_srv_name, parse_nameserver
from agent.models.params.base import TaskParams

from .base import TaskContext, handler

# --- params: the wire model of this family's task types, validated by the engine before a handler runs ---


class StaticSource(TaskParams):
    """Peers given verbatim (each validated as `<node id>@<host>:<port>`); no RPC query."""

    type: Literal["static"]
    addresses: list[PeerAddress] = Field(min_length=1)


class Ec2TagsSource(TaskParams):
    """Running EC2 instances carrying all `tags` (every page of DescribeInstances)."""

    type: Literal["ec2Tags"]
    region: NonEmptyStr
    tags: dict[NonEmptyStr, str] = Field(min_length=1)
    address: Literal["public", "private"] = Field(
        default="public",
        description="Which IP to dial: `public` (falling back to private when a peer has none) or `private`.",
    )


class DnsSource(TaskParams):
    """Hosts from DNS: A/AAAA records of `hosts` (P2P port = `p2pPort`) and SRV records of `srv` (P2P port from the
    record, its target resolved to addresses)."""

    type: Literal["dns"]
    hosts: list[NonEmptyStr] = Field(default_factory=list)
    srv: list[NonEmptyStr] = Field(default_factory=list)
    nameservers: list[str] = Field(
        default_factory=list, description="`ip` or `ip:port` of resolvers to ask; default: the system's resolv.conf."
    )

    @model_validator(mode="after")
    def _something_to_resolve(self) -> DnsSource:
        if not self.hosts and not self.srv:
            raise ValueError("give at least one name in `hosts` (A records) or `srv` (SRV records)")
        for host in self.hosts:
            check_host(host)
        for name in self.srv:
            check_srv_name(name)
        for server in self.nameservers:
            parse_nameserver(server)
        return self


class KubernetesSource(TaskParams):
    """Running pods matching `labelSelector`, read from the Kubernetes API with the pod's ServiceAccount (only when
    the agent runs in a cluster). The agent's own pod is never a candidate."""

    type: Literal["kubernetes"]
    label_selector: NonEmptyStr
    namespace: str = Field(default="", description="Default: the agent's own namespace.")


PeerSource = Annotated[StaticSource | Ec2TagsSource | DnsSource | KubernetesSource, Field(discriminator="type")]


class DiscoverPeersParams(TaskParams):
    """`discover-peers`: find peers from several sources, learn each one's node ID, write `persistent-peers`."""

    deprecated_names: ClassVar[dict[str, str]] = {"p2PPort": "p2pPort"}  # the wire name before wire_name() existed

    sources: list[PeerSource] = Field(min_length=1)
    rpc_port: int = Field(default=26657, ge=1, le=65535, description="Candidates' RPC port (node ID from /status).")
    # Explicit alias: the camelCase generator would spell it `p2PPort`, which no user types (the docs say p2pPort).
    p2p_port: int = Field(
        default=26656, ge=1, le=65535, alias="p2pPort", description="Candidates' P2P port (in the peer address)."
    )
    query_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    max_peers: int | None = Field(default=None, ge=1, description="Keep at most this many peers (first found first).")


QUERY_CONCURRENCY = 16
NO_PEERS_FOUND = "NoPeersFound"


@dataclass(frozen=True)
class Candidate:
    source: str
    host: str
    p2p_port: int


@dataclass
class Discovery:
    """What one source produced: ready peers (static), candidates to query, and notes on what was skipped."""

    label: str
    peers: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- sources -------------------------------------------------------------------------------------------------------


def _ec2_addresses(source: Ec2TagsSource, label: str) -> list[str]:
    filters = [{"Name": "instance-state-name", "Values": ["running"]}]
    filters += [{"Name": f"tag:{key}", "Values": [value]} for key, value in sorted(source.tags.items())]
    import boto3  # imported by the task that needs it: an idle agent does not carry boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "ec2", region_name=source.region, config=Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 3})
    )
    addresses = []
    try:
        for page in client.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    public, private = instance.get("PublicIpAddress"), instance.get("PrivateIpAddress")
                    chosen = private if source.address == "private" else (public or private)
                    if chosen:
                        addresses.append(chosen)
    except (ClientError, BotoCoreError) as error:
        raise TaskError(
            f"{label}: EC2 DescribeInstances in {source.region} with tags {dict(source.tags)} failed: {error}",
            hint="check the agent's AWS credentials (ec2:DescribeInstances) and the region",
            retryable=True,
        ) from None
    return addresses


async def _from_ec2(source: Ec2TagsSource, label: str, params: DiscoverPeersParams) -> Discovery:
    addresses = await asyncio.to_thread(_ec2_addresses, source, label)
    return Discovery(label, candidates=[Candidate(label, address, params.p2p_port) for address in addresses])


def _resolver(source: DnsSource, timeout: float) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=not source.nameservers)
    if source.nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_nameserver(server)) for server in source.nameservers
        ]
    resolver.lifetime = timeout
    return resolver


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    answer = await resolver.resolve(name, "A")
    return sorted({record.address for record in answer})


async def _from_dns(source: DnsSource, label: str, params: DiscoverPeersParams) -> Discovery:
    resolver = _resolver(source, params.query_timeout_seconds)
    found = Discovery(label)
    lookups: list[tuple[str, str]] = [(host, "A") for host in source.hosts] + [(name, "SRV") for name in source.srv]
    for name, kind in lookups:
        try:
            if kind == "A":
                ports = {address: params.p2p_port for address in await _addresses(resolver, name)}
            else:
                records = sorted(await resolver.resolve(name, "SRV"), key=lambda r: (r.priority, -r.weight))
                ports = {}
                for record in records:
                    for address in await _addresses(resolver, record.target.to_text()):
                        ports.setdefault(address, record.port)
        except (dns.exception.DNSException, OSError) as error:
            found.skipped.append({"source": label, "address": name, "reason": f"{kind} lookup failed: {error}"})
            continue
        found.candidates += [Candidate(label, address, port) for address, port in ports.items()]
    return found


async def _from_kubernetes(
    source: KubernetesSource, label: str, params: DiscoverPeersParams, ctx: TaskContext
) -> Discovery:
    if ctx.kube is None:
        raise TaskError(
            f"{label}: the agent is not running with Kubernetes API access (local mode, or no cluster)",
            hint="use a static, dns or ec2Tags source outside a cluster",
        )
    namespace = source.namespace or ctx.settings.pod_namespace
    if not namespace:
        raise TaskError(f"{label}: no namespace given and POD_NAMESPACE is not set", hint="set the source's namespace")
    try:
        pods = await ctx.kube.list_pods(namespace, source.label_selector)
    except TaskError as error:
        raise TaskError(f"{label}: {error.message}", hint=error.hint, retryable=error.retryable) from None
    found = Discovery(label)
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        status = pod.get("status") or {}
        if name == ctx.settings.pod_name or (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if status.get("phase") != "Running" or not status.get("podIP"):
            found.skipped.append({"source": label, "address": name, "reason": "pod not running or has no IP yet"})
            continue
        found.candidates.append(Candidate(label, status["podIP"], params.p2p_port))
    return found


async def _discover(index: int, source: PeerSource, params: DiscoverPeersParams, ctx: TaskContext) -> Discovery:
    label = f"sources[{index}] ({source.type})"
    if isinstance(source, StaticSource):
        return Discovery(label, peers=list(source.addresses))
    if isinstance(source, Ec2TagsSource):
        return await _from_ec2(source, label, params)
    if isinstance(source, DnsSource):
        return await _from_dns(source, label, params)
    return await _from_kubernetes(source, label, params, ctx)


# --- node IDs and the result ---------------------------------------------------------------------------------------


async def _identify(candidates: list[Candidate], params: DiscoverPeersParams) -> tuple[list[str], list[dict[str, str]]]:
    """Peers for the candidates that answer `/status`, in candidate order; the others as skipped notes."""
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)

    async def ask(candidate: Candidate) -> str | dict[str, str]:
        async with gate, RpcClient(_hostport(candidate.host, params.rpc_port)) as rpc:
            try:
                status = await rpc.status(seconds=params.query_timeout_seconds)
            except RpcError as error:
                return {"source": candidate.source, "address": candidate.host, "reason": error.cause}
        return f"{status.node_id}@{_hostport(candidate.host, candidate.p2p_port)}"

    outcomes = await asyncio.gather(*(ask(candidate) for candidate in candidates))
    return [item for item in outcomes if isinstance(item, str)], [item for item in outcomes if isinstance(item, dict)]


def _own_node_id(home: Path) -> str | None:
    path = node_key_path(home)
    return node_id_from_file(path) if path.exists() else None


@handler(TaskType.DISCOVER_PEERS, DiscoverPeersParams)
async def discover_peers(params: DiscoverPeersParams, ctx: TaskContext) -> dict[str, Any]:
    """Find peers (static, EC2 tags, DNS, Kubernetes pods), fetch their node IDs, write persistent-peers."""
    config_file = ctx.home / "config" / "config.toml"
    if not config_file.exists():
        raise TaskError(f"config/config.toml not found in {ctx.home}", reason="ConfigMissing", hint="run config-apply")
    own_id = await asyncio.to_thread(_own_node_id, ctx.home)
    peers: dict[str, str] = {}  # node ID -> peer, first found first
    skipped: list[dict[str, str]] = []
    summary = []
    for index, source in enumerate(params.sources):
        ctx.progress(index, len(params.sources), "sources", f"discovering from sources[{index}] ({source.type})")
        found = await _discover(index, source, params, ctx)
        queried, unreachable = await _identify(found.candidates, params)
        skipped += found.skipped + unreachable
        new = 0
        for peer in found.peers + queried:
            node_id = peer.split("@", 1)[0]
            if node_id != own_id and node_id not in peers:
                peers[node_id], new = peer, new + 1
        summary.append({"source": found.label, "candidates": len(found.candidates) + len(found.peers), "peers": new})
    chosen = list(peers.values())[: params.max_peers]
    if not chosen:
        raise TaskError(
            "no peers discovered from any source"
            + (": " + "; ".join(f"{item['address']}: {item['reason']}" for item in skipped[:10]) if skipped else ""),
            reason=NO_PEERS_FOUND,
            retryable=True,
        )
    changed = await asyncio.to_thread(write_keys, ctx.home, {"network.p2p.persistent_peers": chosen})
    return {"peers": chosen, "count": len(chosen), "sources": summary, "skipped": skipped, "changed": bool(changed)}


HANDLERS = [discover_peers]
