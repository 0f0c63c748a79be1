// Zero-downtime upgrades (issue 19): the running core starts a new binary and hands it every
// listening socket over a unix socket (SCM_RIGHTS), with a small versioned manifest that names
// each descriptor's role and port; the new process adopts them, says "ready", and only then
// the old one drains. Also the core's control socket (<data_dir>/control.sock, 0600, same uid
// only) that `tunnel-core upgrade` talks to.
//
// The hand-off, on a SOCK_SEQPACKET socketpair (one message each, in order):
//   old -> new  "tunnel-core-handoff 1 COUNT"          (no descriptor)
//   old -> new  "ROLE PORT" + exactly one descriptor   (COUNT times)
//   new -> old  "ready PID"                            (after it listens and its store is open)
// Everything read is bounded and checked: the header's version and count, each line's role and
// port, and each descriptor (a socket of the role's type, listening for tcp, bound to PORT).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace tunnel::core::upgrade {

inline constexpr int kManifestVersion = 1;
inline constexpr std::size_t kMaxEntries = 4096;  // every tcp and udp tunnel port, and more
inline constexpr std::size_t kMaxMessage = 256;   // one manifest line
// The environment variable that gives the new process its end of the hand-off socket.
inline constexpr const char* kHandoffEnv = "TUNNEL_UPGRADE_FD";

enum class Role { kAgents, kAgentsPlain, kHttp, kHttps, kAdmin, kApi, kTcp, kUdp, kControl };

struct Entry {
  Role role = Role::kHttp;
  std::uint16_t port = 0;  // 0 for the control socket
  int fd = -1;             // owned by whoever holds the entry
};

std::string_view role_name(Role role);
std::optional<Role> parse_role(std::string_view name);

std::string format_header(std::size_t count);
// The number of entries that follow; an error names what is wrong with the line.
common::Result<std::size_t> parse_header(std::string_view line);
std::string format_entry(const Entry& entry);
// "ROLE PORT" (fd stays -1).
common::Result<Entry> parse_entry(std::string_view line);

// The descriptor is what its entry says: a socket (unix for the control socket, else IPv4 or
// IPv6) of the role's type, listening unless udp, bound to the entry's port.
common::Status check_descriptor(const Entry& entry);

// Blocking. Sends the header and each entry with its descriptor (the caller keeps its own).
common::Status send_handoff(int socket, const std::vector<Entry>& entries);
// Blocking, at most `timeout` in all. On success the caller owns every returned descriptor;
// on failure every descriptor received is closed.
common::Result<std::vector<Entry>> receive_handoff(int socket, std::chrono::milliseconds timeout);

// One message without descriptors, each way (the "ready" line, the control protocol's reply).
common::Status send_line(int socket, std::string_view line);
// At most kMaxMessage bytes within `timeout`; a descriptor that came along is closed and an
// error. The end of the socket is an error ("the other end closed the socket").
common::Result<std::string> receive_line(int socket, std::chrono::milliseconds timeout);

// Closes the descriptors of `entries` that are still >= 0 and sets them to -1.
void close_all(std::vector<Entry>& entries);

// Under systemd (NOTIFY_SOCKET set): sends `state` ("MAINPID=1234") to the service manager, so
// it follows the new process after an upgrade (the unit needs NotifyAccess=main or all). False
// when not under systemd or the message could not be sent.
bool notify_service_manager(std::string_view state);

// The uid of the peer of a connected unix socket (SO_PEERCRED).
common::Result<unsigned> peer_uid(int socket);

// A line of the control protocol, `tunnel-core upgrade` -> core: "upgrade" or
// "upgrade /absolute/path/to/binary". Returns the binary ("" = the running one's path).
common::Result<std::string> parse_upgrade_command(std::string_view line);

}  // namespace tunnel::core::upgrade
