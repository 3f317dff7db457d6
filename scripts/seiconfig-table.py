#!/usr/bin/env python3
"""Produce the data table of sei-config's registry from a sei-config checkout (see docs/config-model.md).

    scripts/seiconfig-table.py /path/to/sei-config [--out agent/chain/seiconfig/sei-config-table.json]
                               [--files tests/fixtures/sei-config]

sei-config (github.com/sei-protocol/sei-config) has no license, so nothing of it is committed here: this script
writes a small Go program into a temporary directory that *imports* the checkout given on the command line (a
`replace` directive) and asks the library itself, through its exported API only:

- `BuildRegistry()` + `EnrichAll(DefaultEnrichments())`: every key, its type, env var, section, hot flag;
- `DefaultForMode(m)` for the four modes: the default of every key per mode;
- the file and TOML path of every key: the key is set to a sentinel (by reflection over the registry's field
  path), `WriteConfigToDir` renders both files, and the parsed TOML is compared with the unmodified render;
- the validation rules: every key is set to a fixed set of probe values per type, in each mode and once more with
  state sync enabled, and `Validate` is run; every diagnostic that appears (severity, field, message) is recorded
  with the probe that triggered it. The rule set is therefore *observed*, not transcribed;
- machine-dependent defaults: the program runs twice, pinned to one CPU (`taskset -c 0`) and unpinned, and keys whose
  defaults differ are marked; a default equal to the host name is marked too;
- with `--files DIR`: the files sei-config writes for each mode (`DIR/<mode>/config/{config,app}.toml`).

Needs Go, network access to the Go module proxy for the checkout's dependencies, Python >= 3.11 (tomllib).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

MODES = ("validator", "full", "seed", "archive")

GO_PROGRAM = r"""
package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	sc "github.com/sei-protocol/sei-config"
)

var modes = []sc.NodeMode{sc.ModeValidator, sc.ModeFull, sc.ModeSeed, sc.ModeArchive}

func field(cfg *sc.SeiConfig, path string) reflect.Value {
	v := reflect.ValueOf(cfg).Elem()
	for _, part := range strings.Split(path, ".") {
		if v.Kind() == reflect.Ptr {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.FieldByName(part)
	}
	return v
}

// set assigns a probe given as JSON-ish Go value; returns false when the kind is not handled.
func set(v reflect.Value, probe any) bool {
	if v.Kind() == reflect.Ptr {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if v.Type() == reflect.TypeOf(sc.Duration{}) {
		d, err := time.ParseDuration(probe.(string))
		if err != nil {
			return false
		}
		v.Set(reflect.ValueOf(sc.Duration{Duration: d}))
		return true
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := probe.(string)
		if !ok {
			return false
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := probe.(bool)
		if !ok {
			return false
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f, ok := probe.(float64)
		if !ok {
			return false
		}
		v.SetInt(int64(f))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f, ok := probe.(float64)
		if !ok || f < 0 {
			return false
		}
		v.SetUint(uint64(f))
	case reflect.Float32, reflect.Float64:
		f, ok := probe.(float64)
		if !ok {
			return false
		}
		v.SetFloat(f)
	case reflect.Slice:
		items, ok := probe.([]any)
		if !ok {
			return false
		}
		if v.Type().Elem().Kind() == reflect.String {
			out := reflect.MakeSlice(v.Type(), 0, len(items))
			for _, item := range items {
				out = reflect.Append(out, reflect.ValueOf(item.(string)).Convert(v.Type().Elem()))
			}
			v.Set(out)
		} else if v.Type().Elem().Kind() == reflect.Slice {
			out := reflect.MakeSlice(v.Type(), 0, 1)
			inner := reflect.MakeSlice(v.Type().Elem(), 0, len(items))
			for _, item := range items {
				inner = reflect.Append(inner, reflect.ValueOf(item.(string)))
			}
			v.Set(reflect.Append(out, inner))
		} else {
			return false
		}
	default:
		return false
	}
	return true
}

func render(cfg *sc.SeiConfig) map[string]string {
	dir, err := os.MkdirTemp("", "seicfg")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := sc.WriteConfigToDir(cfg, dir); err != nil {
		return map[string]string{"error": err.Error()}
	}
	out := map[string]string{}
	for _, name := range []string{"config.toml", "app.toml"} {
		data, err := os.ReadFile(filepath.Join(dir, "config", name))
		if err != nil {
			panic(err)
		}
		out[name] = string(data)
	}
	return out
}

type diag struct {
	Severity string `json:"severity"`
	Field    string `json:"field"`
	Message  string `json:"message"`
}

func validate(cfg *sc.SeiConfig) []diag {
	out := []diag{}
	for _, d := range sc.Validate(cfg).Diagnostics {
		out = append(out, diag{d.Severity.String(), d.Field, d.Message})
	}
	return out
}

type request struct {
	Sentinels map[string]any            `json:"sentinels"`
	Probes    map[string][]any          `json:"probes"`
	Contexts  []map[string]any          `json:"contexts"`
	FilesDir  string                    `json:"files_dir"`
	CheckDirs []string                  `json:"check_dirs"`
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		panic(err)
	}
	checked := map[string]any{}
	for _, dir := range req.CheckDirs {
		cfg, err := sc.ReadConfigFromDir(dir)
		if err != nil {
			checked[dir] = map[string]any{"error": err.Error()}
			continue
		}
		checked[dir] = map[string]any{"mode": cfg.Mode, "version": cfg.Version, "diagnostics": validate(cfg)}
	}
	if len(req.CheckDirs) > 0 {
		json.NewEncoder(os.Stdout).Encode(map[string]any{"checked": checked})
		return
	}
	reg := sc.BuildRegistry()
	unknown := reg.EnrichAll(sc.DefaultEnrichments())
	hostname, _ := os.Hostname()
	keys := []map[string]any{}
	for _, f := range reg.Fields() {
		keys = append(keys, map[string]any{
			"key": f.Key, "env": f.EnvVar, "field_path": f.FieldPath, "type": f.Type.String(),
			"section": f.Section, "hot": f.HotReload, "deprecated": f.Deprecated, "since": f.SinceVersion,
			"required_for": f.RequiredForModes, "description": f.Description, "unit": f.Unit,
		})
	}
	defaults := map[string]any{}
	renders := map[string]any{}
	for _, m := range modes {
		defaults[string(m)] = reg.DefaultsByMode(m)
		renders[string(m)] = render(sc.DefaultForMode(m))
		if req.FilesDir != "" {
			if err := sc.WriteConfigToDir(sc.DefaultForMode(m), filepath.Join(req.FilesDir, string(m))); err != nil {
				panic(err)
			}
		}
	}
	// File and TOML path: one key at a time set to its sentinel on the full-mode defaults.
	placed := map[string]any{}
	for _, f := range reg.Fields() {
		cfg := sc.DefaultForMode(sc.ModeFull)
		probe, ok := req.Sentinels[f.Key]
		if !ok || !set(field(cfg, f.FieldPath), probe) {
			placed[f.Key] = map[string]string{"error": "no sentinel for this type"}
			continue
		}
		placed[f.Key] = render(cfg)
	}
	// Validation: baseline per context, then every probe of every key.
	rules := []map[string]any{}
	baselines := []any{}
	for _, ctx := range req.Contexts {
		base := sc.DefaultForMode(sc.NodeMode(ctx["mode"].(string)))
		for key, value := range ctx["set"].(map[string]any) {
			set(field(base, reg.Field(key).FieldPath), value)
		}
		baselines = append(baselines, validate(base))
		seen := map[diag]bool{}
		for _, d := range validate(base) {
			seen[d] = true
		}
		for _, f := range reg.Fields() {
			probes, ok := req.Probes["key:"+f.Key]
			if !ok {
				probes = req.Probes[f.Type.String()]
			}
			for _, probe := range probes {
				cfg := sc.DefaultForMode(sc.NodeMode(ctx["mode"].(string)))
				for key, value := range ctx["set"].(map[string]any) {
					set(field(cfg, reg.Field(key).FieldPath), value)
				}
				if !set(field(cfg, f.FieldPath), probe) {
					continue
				}
				for _, d := range validate(cfg) {
					if !seen[d] {
						rules = append(rules, map[string]any{
							"key": f.Key, "probe": probe, "context": ctx, "diagnostic": d})
					}
				}
			}
		}
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{
		"keys": keys, "unknown_enrichments": unknown, "defaults": defaults, "renders": renders,
		"placed": placed, "rules": rules, "baselines": baselines, "current_version": sc.CurrentVersion,
		"hostname": hostname,
	})
}
"""

SENTINELS = {
    "string": "probe-sentinel",
    "int": 424242,
    "uint": 424242,
    "float": 0.4242,
    "bool": None,  # the opposite of the full-mode default
    "duration": "4242s",
    "[]string": ["probe-a", "probe-b"],
    "other": ["probe-a", "probe-b"],
}

# Values that exercise every kind of check a config library makes on a value of that type: negative, zero, empty,
# unknown words, non-hex, and the write/read-mode names (one of which is legal but warned about).
PROBES = {
    "int": [-2, -1, 0],
    "uint": [0, 424242],
    "float": [-0.5, 1.5],
    "bool": [True, False],
    "duration": ["-1s", "0s"],
    "string": ["", "probe-unknown", "zz", "test_only_dual_write", "cosmos_only"],
    "[]string": [[], ["probe-a"], ["probe-a", "probe-b"]],
    "other": [],
}
PROBES_BY_KEY = {"key:version": [0, 1, 99]}

STATE_SYNC_ON = {"state_sync.enable": True}


def _flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in document.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _parse(rendered: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {name: _flatten(tomllib.loads(text)) for name, text in rendered.items()}


def run_program(checkout: Path, request: dict[str, Any], *, pin_cpu: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="seiconfig-table-") as work:
        root = Path(work)
        module = json.loads(subprocess.check_output(["go", "mod", "edit", "-json"], cwd=checkout))
        go_mod = (
            f"module seiconfigtable\n\ngo {module.get('Go', '1.24')}\n\n"
            f"require github.com/sei-protocol/sei-config v0.0.0\n\n"
            f"replace github.com/sei-protocol/sei-config => {checkout.resolve()}\n"
        )
        (root / "go.mod").write_text(go_mod)
        (root / "main.go").write_text(GO_PROGRAM)
        env = {**os.environ, "GOFLAGS": "-mod=mod"}
        subprocess.run(["go", "mod", "tidy"], cwd=root, env=env, check=True)
        subprocess.run(["go", "build", "-o", "table", "."], cwd=root, env=env, check=True)
        command = ["./table"]
        if pin_cpu and shutil.which("taskset"):
            command = ["taskset", "-c", "0", *command]
        result = subprocess.run(command, cwd=root, input=json.dumps(request), capture_output=True, text=True)
        if result.returncode:
            sys.exit(f"the table program failed:\n{result.stderr}")
        return json.loads(result.stdout)


def _placement(base: dict[str, dict[str, Any]], probed: dict[str, str]) -> list[dict[str, Any]]:
    if "error" in probed:
        return []
    after = _parse(probed)
    changes = []
    for name in ("config.toml", "app.toml"):
        for path in sorted(set(base[name]) | set(after[name])):
            if base[name].get(path, "<absent>") != after[name].get(path, "<absent>"):
                changes.append({"file": name, "toml": path, "value": after[name].get(path)})
    return changes


def build_table(checkout: Path, files_dir: Path | None, commit: str | None = None) -> dict[str, Any]:
    first = run_program(checkout, {"sentinels": {}, "probes": {}, "contexts": []}, pin_cpu=False)
    sentinels = {}
    for entry in first["keys"]:
        sentinel = SENTINELS[entry["type"]]
        if sentinel is None:
            sentinel = not first["defaults"]["full"][entry["key"]]
        if entry["key"] == "mode":
            sentinel = "seed"
        sentinels[entry["key"]] = sentinel
    contexts = [{"mode": mode, "set": {}} for mode in MODES] + [{"mode": mode, "set": STATE_SYNC_ON} for mode in MODES]
    probes = {**PROBES, **PROBES_BY_KEY}
    request = {
        "sentinels": sentinels,
        "probes": probes,
        "contexts": contexts,
        "files_dir": str(files_dir.resolve()) if files_dir else "",
    }
    full = run_program(checkout, request, pin_cpu=False)
    pinned = run_program(checkout, {**request, "files_dir": ""}, pin_cpu=True)
    base = _parse(full["renders"]["full"])
    rows = []
    for entry in full["keys"]:
        key = entry["key"]
        placement = _placement(base, full["placed"][key])
        machine = [
            m
            for m in MODES
            if full["defaults"][m][key] != pinned["defaults"][m][key] or full["defaults"][m][key] == full["hostname"]
        ]
        rows.append(
            {
                "key": key,
                "type": entry["type"],
                "env": entry["env"],
                "section": entry["section"],
                "hot": entry["hot"],
                "deprecated": entry["deprecated"],
                "since": entry["since"],
                "required_for": entry["required_for"] or [],
                "description": entry["description"],
                "unit": entry["unit"],
                "files": placement,
                "defaults": {mode: full["defaults"][mode][key] for mode in MODES},
                "machine_dependent_modes": machine,
            }
        )
    attributed = {(item["file"], item["toml"]) for row in rows for item in row["files"]}
    constants = [
        {"file": name, "toml": path, "value": value}
        for name, flat in base.items()
        for path, value in sorted(flat.items())
        if (name, path) not in attributed
    ]
    rules: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for observed in full["rules"]:
        diagnostic = observed["diagnostic"]
        context = observed["context"]
        name = context["mode"] + (" + state_sync.enable=true" if context["set"] else "")
        signature = (observed["key"], diagnostic["severity"], diagnostic["field"], json.dumps(observed["probe"]))
        rule = rules.setdefault(
            signature,
            {
                "key": observed["key"],
                "probe": observed["probe"],
                "severity": diagnostic["severity"],
                "field": diagnostic["field"],
                "message": diagnostic["message"],
                "contexts": [],
            },
        )
        rule["contexts"].append(name)
    return {
        "source": {
            "library": "github.com/sei-protocol/sei-config",
            "version": _version(checkout),
            "commit": commit or _commit(checkout),
            "current_schema_version": full["current_version"],
            "generated_by": "scripts/seiconfig-table.py",
            "probe_values": PROBES,
            "note": "defaults marked machine_dependent are this machine's (NumCPU, host name)",
        },
        "keys": rows,
        "constant_keys": constants,
        "baseline_diagnostics": dict(
            zip([c["mode"] + (" + state_sync" if c["set"] else "") for c in contexts], full["baselines"], strict=True)
        ),
        "rules": sorted(rules.values(), key=lambda rule: (rule["key"], json.dumps(rule["probe"]), rule["field"])),
    }


def _version(checkout: Path) -> str:
    path = checkout / "version.json"
    return json.loads(path.read_text())["version"] if path.exists() else "unknown"


def _commit(checkout: Path) -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=checkout, text=True).strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def check_homes(checkout: Path, homes: list[Path]) -> dict[str, Any]:
    """What sei-config's `ReadConfigFromDir` + `Validate` say about each home (mode, version, diagnostics)."""
    request = {
        "sentinels": {},
        "probes": {},
        "contexts": [],
        "files_dir": "",
        "check_dirs": [str(h.resolve()) for h in homes],
    }
    checked = run_program(checkout, request, pin_cpu=False)["checked"]
    return {home.name: checked[str(home.resolve())] for home in homes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a sei-config source tree (with go.mod)")
    parser.add_argument("--out", type=Path, default=Path("agent/chain/seiconfig/sei-config-table.json"))
    parser.add_argument("--files", type=Path, help="also write the files sei-config renders per mode here")
    parser.add_argument("--commit", help="the checkout's commit, when it is not a git work tree (e.g. a git archive)")
    parser.add_argument(
        "--check",
        type=Path,
        nargs="+",
        help="instead of the table: read these homes with sei-config and print its verdict",
    )
    arguments = parser.parse_args()
    if arguments.check:
        print(json.dumps(check_homes(arguments.checkout, arguments.check), indent=1, sort_keys=True))
        return
    table = build_table(arguments.checkout, arguments.files, arguments.commit)
    arguments.out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    print(f"{len(table['keys'])} keys, {len(table['rules'])} observed rules -> {arguments.out}")


if __name__ == "__main__":
    main()
