"""What every part of the suite shares: where things are, the names and sizes the paths and
scenarios agree on, the settings of the two modes, and the progress log (stderr)."""
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent  # bench/
REPO = BENCH.parent
# The loopback port picker of the integration tests (never the same port twice in one run).
sys.path.insert(0, str(REPO / "tests" / "integration"))
from harness import client as _harness  # noqa: E402
free_port = _harness.free_port
HOST = "bench.localhost"
BODY_SIZE = 612
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

PATHS = ["direct", "nginx", "ssh", "tunnel", "tunnel-plain"]
# nginx forwards TCP and UDP with its stream module (a second nginx, "nginx-stream").
TCP_PATHS = ["direct", "nginx", "ssh", "tunnel", "tunnel-plain"]
UDP_PATHS = ["direct", "nginx", "tunnel", "tunnel-plain"]  # OpenSSH forwards TCP only
UDP_PING_SIZE = 128    # bytes per round-trip datagram: a DNS query, a game or VoIP packet
UDP_BULK_LEN = 1400    # bytes per iperf3 datagram: fits an Internet path's 1500-byte MTU
NGINX_STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"  # libnginx-mod-stream
PATH_LABEL = {"direct": "direct", "nginx": "nginx", "ssh": "ssh -R", "tunnel": "tunnel",
              "tunnel-plain": "tunnel-plain"}
PLAIN_HOST = "plain.localhost"  # tunnel-plain's agent serves its own name on the same core
# Our own load tools (bench/tools), found by runner.find_tools and copied by Rig.setup.
TOOLS = ("openloop", "agentflood", "udpping")

MODES = {
    # agent_levels: idle sessions held by agentflood (the first level stays for streams and
    # churn); streams: held requests and over how many sessions; churn: reconnects per second
    # for churn_seconds; rounds: the HTTP and TCP runs are repeated this many times, all paths
    # in turn each round, and each path keeps its best run (the load of this VM's neighbours
    # moves the baselines by up to a third between runs of the same path); churn_settle: seconds
    # before the churn's "before" and "after" RSS readings (35 in full mode: the core trims its
    # heap every 30 s, so both readings come after one trim); udp_rates: round trips per second
    # (udpping), udp_mbit: iperf3 -u offered rates, each direction, one round.
    "quick": {"conns": [32, 256], "duration": 2, "warmup": 1, "rates": [1, 1000, 4000],
              "rate_duration": 1, "tcp_seconds": 1, "bulk_mib": 128,
              "agent_levels": [1000], "streams": 2000, "stream_sessions": 4,
              "churn_rate": 20, "churn_seconds": 15, "agents_plain": True,
              "ttfr_runs": 3, "rounds": 1, "churn_settle": 1,
              "udp_rates": [10000], "udp_seconds": 2, "udp_mbit": [1000],
              "udp_bulk_seconds": 1, "agent_streams": 200, "stalled": (10, 48, 24)},
    "full": {"conns": [32, 256], "duration": 15, "warmup": 2, "rates": [1, 1000, 2000, 4000],
             "rate_duration": 10, "tcp_seconds": 10, "bulk_mib": 1024,
             "agent_levels": [1000, 10000], "agents_plain": True, "streams": 10000,
             "stream_sessions": 20,
             "churn_rate": 20, "churn_seconds": 600, "ttfr_runs": 5, "rounds": 2,
             "churn_settle": 35,
             "udp_rates": [1000, 10000, 20000], "udp_seconds": 10, "udp_mbit": [100, 300, 1000],
             "udp_bulk_seconds": 5, "agent_streams": 1000, "stalled": (30, 96, 48)},
}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)
