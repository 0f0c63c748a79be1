// AUTH exchange messages (JSON payloads of the AUTH frame on stream 0). See docs/protocol.md.
//
// A v1 agent sends {"token","agent_id","version","capabilities","metadata":{"subdomains"}}.
// Our agents add "protocol_versions" (the versions they speak) and a "tunnels" list; the core
// answers with the chosen "protocol_version" and the result of each tunnel. Both AUTH frames
// travel with version byte 1; after the reply both sides use the chosen version.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace tunnel::protocol {

inline constexpr std::size_t kMaxAuthPayload = 64 * 1024;
inline constexpr std::size_t kMaxAccessEntries = 64;   // cidr_allow, cidr_deny: each, per tunnel
inline constexpr std::size_t kMaxBasicAuthUsers = 16;  // basic_auth credentials per tunnel

// One tunnel the agent asks for. `type` is "http" today ("tcp", "udp" later).
struct TunnelRequest {
  std::string type = "http";
  std::string subdomain;          // NAME, served as NAME.<base-domain>
  std::string hostname;           // a full custom domain the account owns
  std::uint16_t remote_port = 0;  // tcp/udp: 0 lets the core choose
  std::string local;              // what the agent forwards to, for display only ("localhost:3000")
  std::uint64_t bandwidth = 0;    // bytes/s the agent asks to be limited to, each way; 0 = none
  // "v1"/"v2": the agent sends PROXY headers to its app; for http tunnels the core then starts
  // each OPEN_STREAM payload with an address line (docs/protocol.md). "" = none.
  std::string proxy_protocol;
  // Who may reach the tunnel (issue 23; docs/security.md): client addresses allowed and denied
  // (CIDR or one address), and Basic credentials "user:HASH" (a $pbkdf2-sha256$ hash, see
  // common/password_hash.hpp: agents hash what their users type before sending it).
  std::vector<std::string> cidr_allow;
  std::vector<std::string> cidr_deny;
  std::vector<std::string> basic_auth;

  bool operator==(const TunnelRequest&) const = default;
};

// The capability of an agent that serves the tunnels the core assigns to it (a registered
// agent of the control plane, issue 17): it sends AUTH without tunnels, and the core answers
// with the assigned ones, each with its `local` target.
inline constexpr std::string_view kAssignedTunnels = "assigned-tunnels";

struct AuthRequest {
  std::string token;  // an account token, or a JWT (HS256) signed with a key the core knows
  std::string agent_id;
  std::string version;
  std::vector<std::string> capabilities;
  std::vector<std::uint8_t> protocol_versions;  // empty means a v1 agent: {1}
  std::uint32_t initial_window = 0;             // v2: the agent's per-stream receive window
  std::vector<TunnelRequest> tunnels;           // v1: built from metadata.subdomain(s)
  // The agent's name for routes (docs/routing.md): "" = its agent id. Checked by
  // check_agent_name(); old cores ignore both keys.
  std::string name;
  std::string group;  // the agent group routes may name instead of agents; "" = none

  bool operator==(const AuthRequest&) const = default;
};

struct TunnelResult {
  std::string type = "http";
  std::string name;  // the hostname (http) or "host:port" (tcp/udp)
  std::string url;   // what a user opens, e.g. "http://app.localhost:8080"
  bool ok = false;
  std::string error;            // why the core refused this tunnel
  std::uint64_t bandwidth = 0;  // the limit the core enforces on this tunnel, bytes/s; 0 = none
  std::string code;             // why it was refused, for programs (refusal::k*); "" from old cores
  // A tunnel the core assigned (kAssignedTunnels): where the agent forwards it, "host:port".
  std::string local;

  bool operator==(const TunnelResult&) const = default;
};

struct AuthResponse {
  bool success = false;
  std::string agent_id;
  std::int64_t server_time = 0;
  std::string error;
  std::string code;  // why, for programs (refusal::k*): the agent decides by it whether to retry
  std::uint8_t protocol_version = 1;
  std::uint32_t heartbeat_interval_ms = 10000;
  std::uint32_t initial_window = 0;  // v2: per-stream receive window of the core (bytes)
  std::vector<TunnelResult> tunnels;

  bool operator==(const AuthResponse&) const = default;
};

// Refusal codes ("code" in the AUTH response and in a refused tunnel's result): what a program
// acts on, while "error" says it to people. Cores before this field sent only "error". New codes
// may appear: an agent that does not know one decides by the text, as with old cores.
namespace refusal {
inline constexpr std::string_view kBadRequest = "bad_request";  // invalid AUTH or tunnel request
inline constexpr std::string_view kBadToken = "bad_token";      // authentication failed
inline constexpr std::string_view kNotAllowed = "not_allowed";  // the account may not use it
inline constexpr std::string_view kNameTaken = "name_taken";    // another account holds it
inline constexpr std::string_view kLimit = "limit";  // an account limit (max_agents, ports)
inline constexpr std::string_view kUnavailable = "unavailable";     // e.g. no free port
inline constexpr std::string_view kShuttingDown = "shutting_down";  // the core drains
inline constexpr std::string_view kThrottled = "throttled";  // too many failed AUTHs from here
}  // namespace refusal

// Whether a refusal with `code` may go away by itself (kRetry) or not (kFinal: bad request,
// bad token, not allowed); kUnknown for "" and codes this build does not know.
enum class RefusalKind { kFinal, kRetry, kUnknown };
RefusalKind refusal_kind(std::string_view code);

// An agent name or group (what routes name): 1 to 63 letters, digits, '.', '_' or '-', starting
// with a letter or digit. The error says what is wrong, without naming the field.
common::Status check_agent_name(std::string_view name);

// Parsers never throw. Payloads over kMaxAuthPayload are rejected unread; unknown keys are
// ignored; a key that is present with the wrong type is an error naming the key. A request
// without "tunnels" (a v1 agent) gets one http tunnel per name in metadata.subdomain(s).
// serialize() output parses back to an equal message.
common::Result<AuthRequest> parse_auth_request(std::string_view json);
std::string serialize(const AuthRequest& request);
common::Result<AuthResponse> parse_auth_response(std::string_view json);
std::string serialize(const AuthResponse& response);

}  // namespace tunnel::protocol
