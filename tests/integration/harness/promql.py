"""PromQL as the deploy/ tests need it: the metric names and label matchers a query uses,
the queries of the Grafana dashboards and of the Prometheus rule files, and the metric
families of a scrape. Not a PromQL parser: a tokenizer that knows where names can be."""
import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "inf", "nan", "atan2"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(r"0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
# Grafana's variables, replaced by values that keep a query valid PromQL.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def selectors(expr):
    """[(metric name or None, [(label, op, value)])] for every vector selector of expr."""
    out, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace() or c in "()+-*/%^,<>=!":
            i += 1
        elif c == '"' or c == "'":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" else 1
            i = j + 1
        elif c == "[":  # a range or subquery: durations, variables
            i = expr.index("]", i) + 1
        elif c == "{":  # a selector without a name
            labels, i = _matchers(expr, i)
            out.append((None, labels))
        elif c == "#":
            i = expr.find("\n", i) if "\n" in expr[i:] else n
        elif NUMBER.match(expr, i) and not IDENT.match(expr, i):
            i = NUMBER.match(expr, i).end()
        elif IDENT.match(expr, i):
            word = IDENT.match(expr, i).group(0)
            i += len(word)
            j = i
            while j < n and expr[j].isspace():
                j += 1
            if word in LABEL_LISTS:
                if j < n and expr[j] == "(":
                    i = expr.index(")", j) + 1
            elif word == "offset":
                m = re.compile(r"\s*-?[0-9a-z]+").match(expr, i)
                i = m.end()
            elif word in KEYWORDS:
                pass
            elif j < n and expr[j] == "(":
                pass  # a function or an aggregation
            elif IDENT.match(expr, j) and IDENT.match(expr, j).group(0) in ("by", "without"):
                pass  # an aggregation: sum by (a) (...)
            else:
                labels = []
                if j < n and expr[j] == "{":
                    labels, i = _matchers(expr, j)
                out.append((word, labels))
        else:
            raise ValueError("unexpected %r at %d in %r" % (c, i, expr))
    return out


def _matchers(expr, i):
    """Parses {a="b",c=~"d"} at expr[i] == "{"; returns (matchers, index after "}")."""
    assert expr[i] == "{"
    i += 1
    labels = []
    while True:
        while expr[i].isspace():
            i += 1
        if expr[i] == "}":
            return labels, i + 1
        m = MATCHER.match(expr, i)
        if not m:
            raise ValueError("bad label matcher at %d in %r" % (i, expr))
        labels.append((m.group(1), m.group(2), m.group(3)))
        i = m.end()


def dashboard_queries(board):
    """(where, PromQL) for every panel target and query variable of a dashboard. A
    label_values(selector, label) variable yields its selector."""
    out = []
    for p in board["panels"]:
        for t in p.get("targets", []):
            out.append(("%s / %s / %s" % (board["uid"], p["title"], t["refId"]), t["expr"]))
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", q)
            assert m, "%s: variable %s: not label_values(selector, label): %r" % (
                board["uid"], v["name"], q)
            out.append(("%s / variable %s" % (board["uid"], v["name"]), m.group(1)))
    return out


def substitute(expr, variables):
    """A dashboard query with Grafana's variables replaced (interval ones by durations, the
    dashboard's own by a plain value) so that it is PromQL."""
    for k, v in GRAFANA_VARS.items():
        expr = expr.replace(k, v)
    for name in variables:
        expr = expr.replace("${%s}" % name, "x").replace("$" + name, "x")
    return expr


def load_dashboards():
    return [(path, json.loads(path.read_text())) for path in DASHBOARDS]


def load_rules(paths=RULE_FILES):
    """[(file, group, rule dict)] of the rule files."""
    out = []
    for path in paths:
        for g in yaml.safe_load(path.read_text())["groups"]:
            for r in g["rules"]:
                out.append((path, g["name"], r))
    return out


def recorded_names():
    return {r["record"] for _, _, r in load_rules() if "record" in r}


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape_families(text, families=None):
    """Adds what a Prometheus text scrape holds to families: {sample name: {label: {values}}}
    (a histogram's _bucket, _count and _sum, a family declared by # TYPE without samples yet
    with no labels known)."""
    families = {} if families is None else families
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names = [name]
            if kind in ("histogram", "summary"):
                names += [name + "_count", name + "_sum"]
                if kind == "histogram":
                    names.append(name + "_bucket")
            for n in names:
                families.setdefault(n, {})
        elif line and not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            labels = families.setdefault(m.group(1), {})
            for k, v in LABEL.findall(m.group(2) or ""):
                labels.setdefault(k, set()).add(v)
    return families
