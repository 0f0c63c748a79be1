"""The scenarios, each a function of the Rig that adds its part to rig.result. STEPS is the
order they run in and the names --only takes."""
from . import agents, http, inflight, memory, transport

STEPS = [("memory", memory.idle), ("ttfr", memory.ttfr),
         ("http", http.keepalive), ("rate", http.fixed_rate),
         ("tcp", transport.tcp), ("udp", transport.udp),
         ("bulk", http.bulk),
         ("agent-streams", inflight.agent_streams),
         ("stalled", inflight.stalled),
         ("memory-after", memory.after_load), ("agents", agents.agents)]
