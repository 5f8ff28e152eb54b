#!/usr/bin/env python3
"""Consul HTTP API stand-in for snapdns integration tests (Python 3.11, stdlib only).

Emulates the read side of a Consul agent's HTTP API as documented in
/work/shared/consul-reference.md §7 (and, where that is silent, Consul's own
agent/http.go, agent/health_endpoint.go, agent/catalog_endpoint.go and
agent/blockingquery/blockingquery.go at upstream commit eef91f28b2):

  GET /v1/catalog/services        §7.1, §7.4  {"svc": ["tag", ...]}
  GET /v1/catalog/nodes           §7.1, §7.4  [Node, ...]
  GET /v1/catalog/service/<svc>   §7.4        [ServiceNode, ...] (flat, no health)
  GET /v1/health/service/<svc>    §7.1, §7.3  [{Node, Service, Checks}, ...]
  GET /v1/health/state/<state>    §7.1, §7.4  [HealthCheck, ...]
  GET /v1/status/leader                       "127.0.0.1:8300" or "" when leaderless

Headers (§7.2), blocking queries with ?index/?wait and jitter (§7.5),
?stale/?consistent/?leader/?max_stale (§7.6), ACL tokens from ?token,
X-Consul-Token or "Authorization: Bearer" and error statuses (§7.7) follow
Consul. gzip follows the NYTimes gziphandler Consul wraps every /v1 endpoint in:
"Vary: Accept-Encoding" always, compression only for bodies >= 1400 bytes.
Header names go out in Go's canonical form (X-Consul-Knownleader ...), as Consul sends them.

Simplifications: one global Raft index for every table (allowed: "the return of
a blocking request is no guarantee of a change", §7.5); ?filter (bexpr) is
refused with 400 instead of being evaluated; ?near is ignored; ?cached is only
checked for conflicts. Enterprise, peering and sameness-group parameters are ignored.

State file / PUT /_standin/state body: {"<service>": [<health/service entry>, ...]}
or {"index": N, "services": {...}}. Node.Datacenter picks the datacenter.

Everything under /_standin/ is the stand-in's control API (fault injection,
request log), not Consul; see README.md next to this file.
"""

import argparse
import copy
import gzip
import ipaddress
import json
import random
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

PLAIN = "text/plain; charset=utf-8"  # Consul's plainContentType
JITTER_FRACTION = 16                  # structs.JitterFraction
CHECK_STATES = ("passing", "warning", "critical")
FAULT_MODES = ("none", "status", "hang", "malformed", "truncated", "disconnect", "index_backwards")
GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")
BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ApiError(Exception):
    """An error answered as text/plain; meta=True adds the zero QueryMeta headers
    that catalog/* and health/state send on RPC errors (their setMeta is deferred)."""

    def __init__(self, status, body, meta=False):
        super().__init__(body)
        self.status, self.body, self.meta = status, body, meta


# ---------------------------------------------------------------- Go-compatible parsing

def parse_go_duration(text):
    """time.ParseDuration: '10s', '1m30s', '500ms', '0'; returns seconds or raises ValueError."""
    s, sign = text, 1.0
    if s[:1] in ("+", "-"):
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(text)
    total, pos = 0.0, 0
    while pos < len(s):
        m = DUR_PART.match(s, pos)
        number, unit = m.group(1), m.group(2)
        if number in ("", ".") or unit not in DUR_UNITS:
            raise ValueError(text)
        total += float(number) * DUR_UNITS[unit]
        pos = m.end()
    if total > 9223372036.854775807:  # int64 nanoseconds overflow
        raise ValueError(text)
    return sign * total


def parse_query(raw):
    """url.ParseQuery: '&' only; ';' or a bad %-escape is an error (Consul then answers 500)."""
    out = {}
    for part in raw.split("&"):
        if ";" in part:
            raise ValueError("semicolon in query")
        if not part:
            continue
        key, _, value = part.partition("=")
        if BAD_PCT.search(key) or BAD_PCT.search(value):
            raise ValueError("bad escape")
        out.setdefault(unquote(key.replace("+", " ")), []).append(unquote(value.replace("+", " ")))
    return out


def go_json(obj, pretty=False):
    """encoding/json output: compact (or 4-space indent for ?pretty), HTML-safe escapes."""
    if pretty:
        text = json.dumps(obj, indent=4, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def accepts_gzip(header):
    for coding in (header or "").split(","):
        name, _, params = coding.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if name.strip().lower() == "gzip" and q > 0:
            return True
    return False


# ---------------------------------------------------------------- registry state

def sorted_maps(obj, keys=("Meta", "TaggedAddresses")):
    """Go marshals map[string]... with sorted keys; struct fields keep their order."""
    out = dict(obj)
    for k in keys:
        if isinstance(out.get(k), dict):
            out[k] = dict(sorted(out[k].items()))
    return out


def validate_entries(name, entries):
    """Checks one service's entries and returns a private copy (Service.Service defaults to name)."""
    if not isinstance(entries, list):
        raise ApiError(400, f"service {name!r}: entries must be a JSON array")
    for e in entries:
        if not (isinstance(e, dict) and isinstance(e.get("Node"), dict)
                and isinstance(e.get("Service"), dict) and "Node" in e["Node"]):
            raise ApiError(400, f"service {name!r}: each entry needs Node{{Node,...}} and Service objects")
    entries = copy.deepcopy(entries)
    for e in entries:
        e["Service"].setdefault("Service", name)
    return entries


class Registry:
    """The 'Raft state': services, one global index, leadership, ACL token, faults, request log."""

    def __init__(self, datacenter, token, index, gzip_min_size, default_wait, max_wait):
        self.cond = threading.Condition()
        self.datacenter, self.token, self.index = datacenter, token, index
        self.default_wait, self.max_wait = default_wait, max_wait
        self.services = {}
        self.abandon_gen = 0      # bumped by PUT /_standin/index ("snapshot restore")
        self.fault_gen = 0        # bumped by every fault change; releases hung requests
        self.stopping = False
        self.log, self.log_seq = [], 0
        self.base_knobs = {"leaderless": False, "slow_ms": 0, "streaming": False, "anonymous": "filter",
                           "gzip_min_size": gzip_min_size, "last_contact_ms": None}
        self.knobs = dict(self.base_knobs)
        self.fault = {"mode": "none"}
        self.leaderless_since = None

    # -- mutations (all bump the index and wake blocked queries) --
    def _changed(self):
        self.index += 1
        self.cond.notify_all()

    def replace(self, services):
        services = {name: validate_entries(name, entries) for name, entries in services.items()}
        with self.cond:
            self.services = services
            self._changed()

    def put_service(self, name, entries):
        entries = validate_entries(name, entries)
        with self.cond:
            self.services[name] = entries
            self._changed()

    def delete_service(self, name):
        with self.cond:
            if self.services.pop(name, None) is None:
                raise ApiError(404, f"no service {name!r}")
            self._changed()

    def set_check(self, node, check_id, status, output):
        with self.cond:
            hits = [c for entries in self.services.values() for e in entries
                    for c in (e.get("Checks") or []) if c.get("Node") == node and c.get("CheckID") == check_id]
            if not hits:
                raise ApiError(404, f"no check {check_id!r} on node {node!r}")
            self.index += 1
            for c in hits:
                c["Status"], c["ModifyIndex"] = status, self.index
                if output is not None:
                    c["Output"] = output
            self.cond.notify_all()

    def restore_index(self, index):
        """Like a snapshot restore: the index may go backwards; blocked queries return at once."""
        with self.cond:
            self.index, self.abandon_gen = index, self.abandon_gen + 1
            self.cond.notify_all()

    def set_token(self, token):
        with self.cond:
            self.token = token
            self.cond.notify_all()

    def set_fault(self, spec, reset=False):
        with self.cond:
            if reset:
                self.knobs, self.fault = dict(self.base_knobs), {"mode": "none"}
            for key in self.base_knobs:
                if key in spec:
                    self.knobs[key] = spec[key]
            if "mode" in spec:
                self.fault = {k: spec[k] for k in ("mode", "status", "body", "paths", "index", "count") if k in spec}
            if self.knobs["leaderless"] and self.leaderless_since is None:
                self.leaderless_since = time.monotonic()
            elif not self.knobs["leaderless"]:
                self.leaderless_since = None
            self.fault_gen += 1
            self.cond.notify_all()

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    # -- reads --
    def fault_for(self, path):
        """The active fault for this request (consuming one 'count'), or {'mode': 'none'}."""
        with self.cond:
            f = self.fault
            paths = f.get("paths") or "/v1/"
            paths = [paths] if isinstance(paths, str) else paths
            if f["mode"] == "none" or not any(path.startswith(p) for p in paths):
                return {"mode": "none"}
            if "count" in f:
                f["count"] -= 1
                if f["count"] <= 0:
                    self.fault = {"mode": "none"}
            return dict(f)

    def hang(self):
        with self.cond:
            gen = self.fault_gen
            while self.fault_gen == gen and not self.stopping:
                self.cond.wait()

    def wait_for_change(self, min_index, wait):
        """blockingquery.Query: hold until index > min_index, the timeout (+ jitter) or a restore."""
        if wait > self.max_wait:
            wait = self.max_wait
        elif wait <= 0:
            wait = self.default_wait
        deadline = time.monotonic() + wait + random.uniform(0, wait / JITTER_FRACTION)
        with self.cond:
            gen = self.abandon_gen
            while self.index <= min_index and not self.stopping and self.abandon_gen == gen:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.cond.wait(remaining)

    def datacenters(self):
        dcs = {self.datacenter}
        for entries in self.services.values():
            dcs.update(e["Node"].get("Datacenter") or self.datacenter for e in entries)
        return dcs

    def record(self, method, raw_path, query, headers):
        with self.cond:
            self.log_seq += 1
            entry = {"id": self.log_seq, "time": time.time(), "method": method, "path": raw_path,
                     "query": query, "headers": {k.lower(): v for k, v in headers.items()}, "status": None}
            self.log.append(entry)
            del self.log[:-10000]
            return entry


# ---------------------------------------------------------------- Consul read endpoints

def node_meta_ok(node, filters):
    meta = node.get("Meta") or {}
    return all(meta.get(k) == v for k, v in filters)


def entries_in(reg, dc, filters, name=None):
    """All health/service entries in dc (optionally of one service, case-insensitive)."""
    out = []
    for svc, entries in reg.services.items():
        if name is not None and svc.lower() != name.lower():
            continue
        out += [e for e in entries if (e["Node"].get("Datacenter") or reg.datacenter) == dc
                and node_meta_ok(e["Node"], filters)]
    return out


def render_entry(e):
    svc = sorted_maps(e["Service"])
    svc["Tags"] = svc.get("Tags") or []
    checks = [dict(c, ServiceTags=c.get("ServiceTags") or []) for c in (e.get("Checks") or [])]
    return {"Node": sorted_maps(e["Node"]), "Service": svc, "Checks": checks}


def has_tags(e, tags):
    have = {t.lower() for t in (e["Service"].get("Tags") or [])}
    return all(t.lower() in have for t in tags)


def exclude_not_passing(entries):
    """CheckServiceNodes.Filter: swap-remove, so the order changes exactly as in Consul."""
    nodes, n, i = list(entries), len(entries), 0
    while i < n:
        if any(c.get("Status") != "passing" for c in nodes[i]["Checks"]):
            nodes[i], nodes[n - 1] = nodes[n - 1], None
            n -= 1
            continue
        i += 1
    return nodes[:n]


def health_service(reg, q, name, dc, filters):
    entries = entries_in(reg, dc, filters, name)
    if "tag" in q:
        entries = [e for e in entries if has_tags(e, q["tag"])]
    entries.sort(key=lambda e: (e["Node"]["Node"].lower(), str(e["Service"].get("ID", "")).lower()))
    entries = [render_entry(e) for e in entries]
    if go_bool_param(q, "passing"):
        entries = exclude_not_passing(entries)
    return entries


def health_state(reg, state, dc, filters):
    seen, out = set(), []
    for e in entries_in(reg, dc, filters):
        for c in e.get("Checks") or []:
            key = (c.get("Node"), c.get("CheckID"))
            if key in seen or (state != "any" and str(c.get("Status", "")).lower() != state.lower()):
                continue
            seen.add(key)
            out.append(dict(c, ServiceTags=c.get("ServiceTags") or []))
    return sorted(out, key=lambda c: (str(c.get("Node", "")).lower(), str(c.get("CheckID", "")).lower()))


def catalog_services(reg, dc, filters):
    out = {}
    for e in entries_in(reg, dc, filters):
        out.setdefault(e["Service"].get("Service"), set()).update(e["Service"].get("Tags") or [])
    return {svc: sorted(tags) for svc, tags in sorted(out.items())}


def catalog_nodes(reg, dc, filters):
    nodes = {}
    for e in entries_in(reg, dc, filters):
        nodes.setdefault(e["Node"]["Node"], sorted_maps(e["Node"]))
    return [nodes[k] for k in sorted(nodes, key=str.lower)]


def catalog_service(reg, q, name, dc, filters):
    out = []
    for e in entries_in(reg, dc, filters, name):
        if "tag" in q and not has_tags(e, q["tag"]):
            continue
        n, s = e["Node"], e["Service"]
        row = {"ID": n.get("ID", ""), "Node": n["Node"], "Address": n.get("Address", ""),
               "Datacenter": n.get("Datacenter") or dc, "TaggedAddresses": n.get("TaggedAddresses"),
               "NodeMeta": n.get("Meta"), "ServiceKind": s.get("Kind", ""), "ServiceID": s.get("ID", ""),
               "ServiceName": s.get("Service", ""), "ServiceTags": s.get("Tags") or [],
               "ServiceAddress": s.get("Address", "")}
        if s.get("TaggedAddresses"):
            row["ServiceTaggedAddresses"] = s["TaggedAddresses"]
        row.update({"ServiceWeights": s.get("Weights", {"Passing": 1, "Warning": 1}),
                    "ServiceMeta": s.get("Meta"), "ServicePort": s.get("Port", 0),
                    "ServiceSocketPath": s.get("SocketPath", ""),
                    "ServiceEnableTagOverride": s.get("EnableTagOverride", False),
                    "ServiceProxy": s.get("Proxy", {"Mode": "", "MeshGateway": {}, "Expose": {}}),
                    "ServiceConnect": s.get("Connect", {}), "CreateIndex": s.get("CreateIndex", 0),
                    "ModifyIndex": s.get("ModifyIndex", 0)})
        out.append(sorted_maps(row, ("TaggedAddresses", "NodeMeta", "ServiceMeta")))
    return sorted(out, key=lambda r: (r["Node"].lower(), r["ServiceID"].lower()))


def go_bool_param(q, key):
    """getBoolQueryParam: present & empty = true, else strconv.ParseBool."""
    if key not in q:
        return False
    val = q[key][0]
    if val == "" or val in GO_TRUE:
        return True
    if val in GO_FALSE:
        return False
    raise ValueError(val)


ROUTES = [  # (prefix, kind, takes a trailing name)
    ("/v1/catalog/services", "catalog_services", False),
    ("/v1/catalog/nodes", "catalog_nodes", False),
    ("/v1/catalog/service/", "catalog_service", True),
    ("/v1/health/service/", "health_service", True),
    ("/v1/health/state/", "health_state", True),
    ("/v1/status/leader", "status_leader", False),
]


def route(path):
    """Go ServeMux semantics: exact patterns, subtree patterns, 301 to add a missing slash."""
    for prefix, kind, subtree in ROUTES:
        if subtree and path.startswith(prefix):
            return kind, path[len(prefix):]
        if not subtree and path == prefix:
            return kind, None
        if subtree and path == prefix.rstrip("/"):
            return "redirect", prefix
    return None, None


# ---------------------------------------------------------------- HTTP handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "consul-standin"
    reg: Registry = None  # set in main()
    verbose = False

    def log_message(self, fmt, *args):
        if self.verbose:
            sys.stderr.write("standin: " + (fmt % args) + "\n")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = lambda self: self.dispatch()

    # -- plumbing --
    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def send(self, status, body, headers=(), gzip_ok=False, content_length=None):
        headers = list(headers)
        if gzip_ok and accepts_gzip(self.headers.get("Accept-Encoding")) \
                and len(body) >= self.reg.knobs["gzip_min_size"]:
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def send_json(self, status, obj):
        return self.send(status, json.dumps(obj, indent=2).encode() + b"\n", [("Content-Type", "application/json")])

    def send_text(self, status, text, headers=()):
        return self.send(status, text.encode(), [("Content-Type", PLAIN)] + list(headers))

    def dispatch(self):
        raw_path, _, raw_query = self.path.partition("?")
        path = unquote(raw_path)
        try:
            if path.startswith("/_standin/"):
                self.control(path[len("/_standin/"):], raw_query)
            elif path.startswith("/v1/"):
                self.consul(path, raw_path, raw_query)
            elif path == "/":
                self.send_text(200, "Consul Agent: UI disabled. To enable, set ui_config.enabled=true "
                                    "in the agent configuration and restart.")
            else:
                self.send_text(404, "Invalid URL path: if attempting to use the HTTP API, "
                                    "ensure the path starts with '/v1/'\n")
        except ApiError as e:
            self.send_text(e.status, e.body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    # -- Consul API --
    def consul(self, path, raw_path, raw_query):
        reg = self.reg
        self.body()
        entry = reg.record(self.command, raw_path, raw_query, self.headers)
        entry["status"] = self.consul_respond(path, raw_query)

    def consul_respond(self, path, raw_query):
        reg = self.reg
        kind, arg = route(path)
        if kind is None:
            return self.send_text(404, "Invalid URL path: not a recognized HTTP API endpoint\n")
        if kind == "redirect":
            loc = arg + ("?" + raw_query if raw_query else "")
            return self.send(301, f'<a href="{loc}">Moved Permanently</a>.\n\n'.encode(),
                             [("Location", loc), ("Content-Type", "text/html; charset=utf-8")])
        base = [("X-Consul-Default-Acl-Policy", "deny" if reg.token else "allow"),
                ("Vary", "Accept-Encoding")]
        if reg.knobs["slow_ms"]:
            time.sleep(reg.knobs["slow_ms"] / 1000.0)
        fault = reg.fault_for(path)
        if fault["mode"] == "hang":
            reg.hang()
            self.close_connection = True
            return None
        if fault["mode"] == "status":
            body = fault.get("body", "No cluster leader")
            return self.send(int(fault.get("status", 500)), body.encode(),
                             [("Content-Type", PLAIN)] + base, gzip_ok=True)
        if self.command == "OPTIONS":
            return self.send(200, b"", [("Allow", "OPTIONS,GET")] + base)
        if self.command != "GET":
            return self.send(405, f"method {self.command} not allowed".encode(),
                             [("Allow", "OPTIONS,GET"), ("Content-Type", PLAIN)] + base, gzip_ok=True)
        try:
            obj, meta = self.consul_read(kind, arg, raw_query, fault)
        except ApiError as e:
            hdrs = [("Content-Type", PLAIN)] + base
            if e.meta:
                hdrs += [("X-Consul-Lastcontact", "0"), ("X-Consul-Index", "1"),
                         ("X-Consul-Knownleader", "false"), ("X-Consul-Query-Backend", "blocking-query")]
            return self.send(e.status, e.body.encode(), hdrs, gzip_ok=True)
        pretty = "pretty" in parse_query(raw_query)
        body = go_json(obj, pretty)
        hdrs = [("Content-Type", "application/json")] + base + meta
        if fault["mode"] == "malformed":
            body = b'[{"Node":{"Node":"web-01","Address":"10.0.1.11"},"Service":{"ID":' + b"<html>oops"
        elif fault["mode"] == "truncated":
            body = body[:len(body) // 2]
        elif fault["mode"] == "disconnect":
            self.send_response_only(200)
            for k, v in hdrs:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return 200
        return self.send(200, body, hdrs, gzip_ok=True)

    def consul_read(self, kind, arg, raw_query, fault):
        """Returns (object, meta headers) or raises ApiError, in Consul's order of checks."""
        reg = self.reg
        try:
            q = parse_query(raw_query)
        except ValueError:
            raise ApiError(500, "")  # wrap(): url.ParseQuery failed, empty body
        first = lambda k: q[k][0] if k in q else ""
        filters = [tuple(f.split(":", 1)) if ":" in f else (f, "") for f in q.get("node-meta", [])]
        # parse(): parseDC, token, parseConsistency, parseCacheControl, parseWait
        dc = first("datacenter") or first("dc") or reg.datacenter
        token = first("token") or self.header_token()
        stale, consistent, cached = "stale" in q, "consistent" in q, "cached" in q
        max_stale = 0.0
        if first("max_stale"):
            try:
                max_stale = parse_go_duration(first("max_stale"))
            except ValueError:
                raise ApiError(400, f'Invalid max_stale value "{first("max_stale")}"')
            stale = stale or max_stale > 0
        if stale and consistent:
            raise ApiError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        if cached and consistent:
            raise ApiError(400, "Cannot specify ?cached with ?consistent, conflicting semantics.")
        for d in (self.headers.get("Cache-Control") or "").lower().split(","):
            d = d.strip()
            for prefix in ("max-age=", "stale-if-error="):
                if d.startswith(prefix) and not re.fullmatch(r"[+-]?[0-9]+", d[len(prefix):]):
                    raise ApiError(400, "Invalid Cache-Control header.")
        wait = 0.0
        if first("wait"):
            try:
                wait = parse_go_duration(first("wait"))
            except ValueError:
                raise ApiError(400, "Invalid wait time")
        min_index = 0
        if first("index"):
            if not re.fullmatch(r"[0-9]+", first("index")) or int(first("index")) >= 2 ** 64:
                raise ApiError(400, "Invalid index")
            min_index = int(first("index"))
        if first("filter"):
            raise ApiError(400, "consul-standin: ?filter (bexpr) is not emulated")
        # endpoint argument checks done in the HTTP handler, before the RPC
        if kind in ("health_service", "catalog_service") and not arg:
            raise ApiError(400, "Missing service name")
        if kind == "health_state" and not arg:
            raise ApiError(400, "Missing check state")
        if kind == "health_service":
            try:
                go_bool_param(q, "passing")
            except ValueError:
                raise ApiError(400, "Invalid value for ?passing")
        # the "RPC": datacenter forwarding, leader forwarding, ACL resolution, blocking
        meta_err = kind in ("catalog_services", "catalog_nodes", "health_state")
        if dc not in reg.datacenters():
            raise ApiError(500, "No path to datacenter", meta_err)
        if kind == "status_leader":
            return ("" if reg.knobs["leaderless"] else "127.0.0.1:8300"), []
        streaming = (kind == "health_service" and reg.knobs["streaming"]
                     and (min_index > 0 or cached) and "near" not in q)
        if reg.knobs["leaderless"] and not stale and not streaming:
            raise ApiError(500, "No cluster leader", meta_err)
        anonymous = self.check_token(token, meta_err)
        backwards = fault["mode"] == "index_backwards"
        if min_index > 0 and not backwards:
            reg.wait_for_change(min_index, wait)
        with reg.cond:
            obj = [] if kind != "catalog_services" else {}
            if not anonymous:
                obj = {"catalog_services": lambda: catalog_services(reg, dc, filters),
                       "catalog_nodes": lambda: catalog_nodes(reg, dc, filters),
                       "catalog_service": lambda: catalog_service(reg, q, arg, dc, filters),
                       "health_service": lambda: health_service(reg, q, arg, dc, filters),
                       "health_state": lambda: health_state(reg, arg, dc, filters)}[kind]()
            index = int(fault.get("index", 1)) if backwards else reg.index
        known, last_ms = self.leader_meta(stale, streaming)
        level = "consistent" if consistent else "stale" if stale else "leader"
        if stale and 0 < max_stale < last_ms / 1000.0:  # RETRY_ONCE against the leader
            if reg.knobs["leaderless"]:
                raise ApiError(500, "No cluster leader", meta_err)
            known, last_ms = True, 0
            level = "stale" if kind == "health_service" else "leader"
        meta = [("X-Consul-Lastcontact", str(int(last_ms))), ("X-Consul-Index", str(max(1, index))),
                ("X-Consul-Knownleader", "true" if known else "false"),
                ("X-Consul-Effective-Consistency", level),
                ("X-Consul-Query-Backend", "streaming" if streaming else "blocking-query")]
        return obj, meta

    def header_token(self):
        tok = self.headers.get("X-Consul-Token") or ""
        if tok:
            return tok
        parts = (self.headers.get("Authorization") or "").split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            return " ".join(parts[1:]).strip().split(" ")[0].strip()
        return ""

    def check_token(self, token, meta_err):
        """Returns True when the request runs as the anonymous token (results filtered)."""
        required = self.reg.token
        if not required or token == required:
            return False
        if token or self.reg.knobs["anonymous"] == "forbid":
            raise ApiError(403, "ACL not found", meta_err)
        return True  # default-deny anonymous: 200 with empty results (§7.7)

    def leader_meta(self, stale, streaming):
        """(KnownLeader, LastContact ms) as Server.SetQueryMeta would report them."""
        k = self.reg.knobs
        if streaming:
            return False, 0  # streaming results carry empty QueryMeta (§7.2)
        if k["leaderless"]:
            since = self.reg.leaderless_since or time.monotonic()
            return False, k["last_contact_ms"] or (time.monotonic() - since) * 1000
        if stale and k["last_contact_ms"]:
            return True, k["last_contact_ms"]  # answered by a follower
        return True, 0

    # -- control API --
    def control(self, what, raw_query):
        body = self.body()
        try:
            q = {k: v[0] for k, v in parse_query(raw_query).items()}
            return self.control_dispatch(what, q, body)
        except (ValueError, TypeError) as e:
            raise ApiError(400, f"bad control request: {e}")

    def control_dispatch(self, what, q, body):
        reg, method = self.reg, self.command
        if what == "state" and method == "GET":
            with reg.cond:
                return self.send_json(200, {"index": reg.index, "services": reg.services})
        if what == "state" and method == "PUT":
            data = self.json_body(body)
            if isinstance(data, dict) and isinstance(data.get("services"), dict):
                data = data["services"]
            if not isinstance(data, dict):
                raise ApiError(400, "state must be a JSON object: service -> entries")
            reg.replace(data)
            return self.send_json(200, {"index": reg.index})
        if what.startswith("service/") and what[8:]:
            name = what[8:]
            if method == "PUT":
                reg.put_service(name, self.json_body(body))
            elif method == "DELETE":
                reg.delete_service(name)
            elif method == "GET":
                with reg.cond:
                    return self.send_json(200, reg.services.get(name, []))
            else:
                raise ApiError(405, f"method {method} not allowed")
            return self.send_json(200, {"index": reg.index})
        if what == "check" and method == "PUT":
            if q.get("status") not in CHECK_STATES or not q.get("node") or not q.get("check"):
                raise ApiError(400, "need ?node=&check=&status=passing|warning|critical")
            reg.set_check(q["node"], q["check"], q["status"], q.get("output"))
            return self.send_json(200, {"index": reg.index})
        if what == "fault" and method in ("PUT", "DELETE", "GET"):
            if method != "GET":
                spec = self.json_body(body) if body.strip() else {}
                if not isinstance(spec, dict) or spec.get("mode", "none") not in FAULT_MODES:
                    raise ApiError(400, f"fault body must be an object; mode one of {FAULT_MODES}")
                for key in ("status", "index", "count", "slow_ms", "gzip_min_size", "last_contact_ms"):
                    if spec.get(key) is not None and not isinstance(spec[key], int):
                        raise ApiError(400, f"fault field {key!r} must be an integer")
                if spec.get("anonymous", "filter") not in ("filter", "forbid"):
                    raise ApiError(400, 'fault field "anonymous" must be "filter" or "forbid"')
                reg.set_fault(spec, reset=(method == "DELETE"))
            with reg.cond:
                return self.send_json(200, dict(reg.knobs, **reg.fault))
        if what == "token" and method in ("PUT", "GET"):
            if method == "PUT":
                reg.set_token(body.decode().strip())
            return self.send_json(200, {"token": reg.token})
        if what == "requests" and method in ("GET", "DELETE"):
            with reg.cond:
                if method == "DELETE":
                    reg.log.clear()
                prefix = q.get("path", "")
                return self.send_json(200, [e for e in reg.log if e["path"].startswith(prefix)])
        if what == "index" and method in ("GET", "PUT"):
            if method == "PUT":
                reg.restore_index(int(self.json_body(body)))
            return self.send_json(200, {"index": reg.index})
        raise ApiError(404, f"unknown control endpoint {method} /_standin/{what}")

    @staticmethod
    def json_body(body):
        try:
            return json.loads(body or b"null")
        except ValueError as e:
            raise ApiError(400, f"invalid JSON body: {e}")


# ---------------------------------------------------------------- server and CLI

class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    tls = None  # ssl.SSLContext when serving HTTPS

    def server_bind(self):
        """HTTPServer.server_bind minus its reverse-DNS lookup (socket.getfqdn)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        """TLS handshake in the worker thread so a slow client cannot stall accept()."""
        if self.tls is None:
            return super().finish_request(request, client_address)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass


class Server6(Server):
    address_family = socket.AF_INET6


def load_state(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, dict) and isinstance(data.get("services"), dict):
        return data["services"], data.get("index")
    return data, None


def main(argv=None):
    p = argparse.ArgumentParser(description="Consul HTTP API stand-in for tests (loopback only)")
    p.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--state", help="registry JSON: {service: [health/service entries]}")
    p.add_argument("--token", default="", help="require this ACL token (default policy deny)")
    p.add_argument("--datacenter", default="dc1")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--client-ca", help="require client certificates signed by this CA")
    p.add_argument("--initial-index", type=int, default=10)
    p.add_argument("--gzip-min-size", type=int, default=1400, help="gziphandler.DefaultMinSize")
    p.add_argument("--default-wait", default="5m", help="default_query_time")
    p.add_argument("--max-wait", default="10m", help="max_query_time")
    p.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = p.parse_args(argv)

    host = "127.0.0.1" if args.bind == "localhost" else args.bind
    if not ipaddress.ip_address(host).is_loopback:
        p.error("--bind must be a loopback address")
    if bool(args.tls_cert) != bool(args.tls_key) or (args.client_ca and not args.tls_cert):
        p.error("--tls-cert and --tls-key go together; --client-ca needs them")

    reg = Registry(args.datacenter, args.token, args.initial_index, args.gzip_min_size,
                   parse_go_duration(args.default_wait), parse_go_duration(args.max_wait))
    if args.state:
        services, index = load_state(args.state)
        reg.replace(services)
        reg.index = index if index is not None else args.initial_index
    Handler.reg, Handler.verbose = reg, args.verbose

    cls = Server6 if ":" in host else Server
    server = cls((host, args.port), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)
        server.tls = ctx

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    port = server.server_address[1]
    print(f"listening {host if ':' not in host else '[' + host + ']'}:{port}", flush=True)
    while not stop.wait(0.1):
        pass
    reg.stop()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
