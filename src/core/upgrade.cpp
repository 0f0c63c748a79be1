#include "core/upgrade.hpp"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace tunnel::core::upgrade {
namespace {

constexpr std::string_view kMagic = "tunnel-core-handoff";

constexpr std::array<std::pair<Role, std::string_view>, 9> kRoles{{
    {Role::kAgents, "agents"},
    {Role::kAgentsPlain, "agents-plain"},
    {Role::kHttp, "http"},
    {Role::kHttps, "https"},
    {Role::kAdmin, "admin"},
    {Role::kApi, "api"},
    {Role::kTcp, "tcp"},
    {Role::kUdp, "udp"},
    {Role::kControl, "control"},
}};

std::optional<std::uint64_t> parse_number(std::string_view text, std::uint64_t max) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text.substr(0, 64)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// Waits until `socket` is readable or `deadline`; false on timeout.
common::Status wait_readable(int socket, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return common::fail("timed out");
    pollfd p{socket, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return common::success();
    if (n < 0 && errno != EINTR) return common::fail(errno_text("poll"));
  }
}

// One message and at most one descriptor (more, or a truncated one, is an error; every
// descriptor that came is closed then). `fd` is -1 when none came.
common::Result<std::string> receive_message(int socket, int& fd,
                                            std::chrono::steady_clock::time_point deadline) {
  fd = -1;
  if (auto ready = wait_readable(socket, deadline); !ready) return ready.error();
  std::array<char, kMaxMessage + 1> data{};
  iovec iov{data.data(), data.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 4)> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n = 0;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return common::fail(errno_text("recvmsg"));
  std::vector<int> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received = -1;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      fds.push_back(received);
    }
  }
  const auto refuse = [&](std::string why) {
    for (const int f : fds) ::close(f);
    return common::fail(std::move(why));
  };
  if ((msg.msg_flags & MSG_CTRUNC) != 0) return refuse("too many descriptors in one message");
  if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(n) > kMaxMessage) {
    return refuse("a message over " + std::to_string(kMaxMessage) + " bytes");
  }
  if (n == 0) return refuse("the other end closed the socket");
  if (fds.size() > 1) return refuse("more than one descriptor in one message");
  if (!fds.empty()) fd = fds.front();
  std::string line(data.data(), static_cast<std::size_t>(n));
  if (!line.empty() && line.back() == '\n') line.pop_back();
  return line;
}

common::Status send_message(int socket, std::string_view line, int fd) {
  iovec iov{const_cast<char*>(line.data()), line.size()};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  ssize_t n = 0;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return common::fail(errno_text("sendmsg"));
  return common::success();
}

}  // namespace

std::string_view role_name(Role role) {
  for (const auto& [r, name] : kRoles) {
    if (r == role) return name;
  }
  return "?";
}

std::optional<Role> parse_role(std::string_view name) {
  for (const auto& [r, n] : kRoles) {
    if (n == name) return r;
  }
  return std::nullopt;
}

std::string format_header(std::size_t count) {
  return std::string(kMagic) + " " + std::to_string(kManifestVersion) + " " + std::to_string(count);
}

common::Result<std::size_t> parse_header(std::string_view line) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos || line.substr(0, space) != kMagic) {
    return common::fail("not a hand-off header: \"" + printable(line) + "\"");
  }
  line.remove_prefix(space + 1);
  const auto second = line.find(' ');
  if (second == std::string_view::npos) return common::fail("hand-off header without a count");
  const auto version = parse_number(line.substr(0, second), 1'000'000);
  if (!version || *version != kManifestVersion) {
    return common::fail("hand-off manifest version \"" + printable(line.substr(0, second)) +
                        "\" (this binary reads version " + std::to_string(kManifestVersion) + ")");
  }
  const auto count = parse_number(line.substr(second + 1), kMaxEntries);
  if (!count) {
    return common::fail("hand-off count \"" + printable(line.substr(second + 1)) +
                        "\" is not a number up to " + std::to_string(kMaxEntries));
  }
  return static_cast<std::size_t>(*count);
}

std::string format_entry(const Entry& entry) {
  return std::string(role_name(entry.role)) + " " + std::to_string(entry.port);
}

common::Result<Entry> parse_entry(std::string_view line) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos) {
    return common::fail("hand-off entry \"" + printable(line) + "\" is not ROLE PORT");
  }
  const auto role = parse_role(line.substr(0, space));
  if (!role) return common::fail("hand-off entry: unknown role \"" + printable(line) + "\"");
  const auto port = parse_number(line.substr(space + 1), 65535);
  if (!port || (*role != Role::kControl && *port == 0) || (*role == Role::kControl && *port != 0)) {
    return common::fail("hand-off entry: bad port in \"" + printable(line) + "\"");
  }
  Entry entry;
  entry.role = *role;
  entry.port = static_cast<std::uint16_t>(*port);
  return entry;
}

common::Status check_descriptor(const Entry& entry) {
  const std::string what = format_entry(entry);
  struct stat st {};
  if (::fstat(entry.fd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return common::fail("hand-off: the descriptor for " + what + " is not a socket");
  }
  int type = 0;
  socklen_t len = sizeof(type);
  if (::getsockopt(entry.fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return common::fail("hand-off: " + what + ": " + errno_text("SO_TYPE"));
  }
  const int want_type = entry.role == Role::kUdp       ? SOCK_DGRAM
                        : entry.role == Role::kControl ? SOCK_SEQPACKET
                                                       : SOCK_STREAM;
  if (type != want_type) return common::fail("hand-off: " + what + ": the socket's type differs");
  if (entry.role != Role::kUdp) {
    int listening = 0;
    len = sizeof(listening);
    if (::getsockopt(entry.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        listening == 0) {
      return common::fail("hand-off: " + what + ": the socket is not listening");
    }
  }
  sockaddr_storage address{};
  len = sizeof(address);
  if (::getsockname(entry.fd, reinterpret_cast<sockaddr*>(&address), &len) != 0) {
    return common::fail("hand-off: " + what + ": " + errno_text("getsockname"));
  }
  if (entry.role == Role::kControl) {
    if (address.ss_family != AF_UNIX) return common::fail("hand-off: " + what + ": not unix");
    return common::success();
  }
  std::uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    port = ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
  } else if (address.ss_family == AF_INET6) {
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  } else {
    return common::fail("hand-off: " + what + ": not an IP socket");
  }
  if (port != entry.port) {
    return common::fail("hand-off: " + what + ": the socket is bound to port " +
                        std::to_string(port));
  }
  return common::success();
}

common::Status send_handoff(int socket, const std::vector<Entry>& entries) {
  if (entries.size() > kMaxEntries) {
    return common::fail("more than " + std::to_string(kMaxEntries) + " listening sockets");
  }
  if (auto sent = send_message(socket, format_header(entries.size()), -1); !sent) return sent;
  for (const Entry& entry : entries) {
    if (auto sent = send_message(socket, format_entry(entry), entry.fd); !sent) return sent;
  }
  return common::success();
}

common::Result<std::vector<Entry>> receive_handoff(int socket, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<Entry> entries;
  const auto refuse = [&](std::string why) {
    close_all(entries);
    return common::fail(std::move(why));
  };
  int fd = -1;
  auto header = receive_message(socket, fd, deadline);
  if (!header) return refuse("hand-off header: " + header.error().message);
  if (fd >= 0) {
    ::close(fd);
    return refuse("hand-off header came with a descriptor");
  }
  const auto count = parse_header(header.value());
  if (!count) return refuse(count.error().message);
  entries.reserve(count.value());
  for (std::size_t i = 0; i < count.value(); ++i) {
    auto line = receive_message(socket, fd, deadline);
    if (!line)
      return refuse("hand-off entry " + std::to_string(i + 1) + ": " + line.error().message);
    auto entry = parse_entry(line.value());
    if (!entry) {
      if (fd >= 0) ::close(fd);
      return refuse(entry.error().message);
    }
    if (fd < 0)
      return refuse("hand-off entry \"" + format_entry(entry.value()) + "\" without a descriptor");
    entry.value().fd = fd;
    entries.push_back(entry.value());
    if (auto checked = check_descriptor(entries.back()); !checked) {
      return refuse(checked.error().message);
    }
  }
  return entries;
}

common::Status send_line(int socket, std::string_view line) {
  return send_message(socket, line, -1);
}

common::Result<std::string> receive_line(int socket, std::chrono::milliseconds timeout) {
  int fd = -1;
  auto line = receive_message(socket, fd, std::chrono::steady_clock::now() + timeout);
  if (fd >= 0) {
    ::close(fd);
    return common::fail("a descriptor came where none was expected");
  }
  return line;
}

void close_all(std::vector<Entry>& entries) {
  for (Entry& entry : entries) {
    if (entry.fd >= 0) ::close(entry.fd);
    entry.fd = -1;
  }
}

bool notify_service_manager(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || (path[0] != '/' && path[0] != '@')) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::size_t length = std::strlen(path);
  if (length >= sizeof(address.sun_path)) return false;
  std::memcpy(address.sun_path, path, length);
  if (path[0] == '@') address.sun_path[0] = '\0';  // an abstract socket
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const auto size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + length);
  const bool sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&address), size) >= 0;
  ::close(fd);
  return sent;
}

common::Result<unsigned> peer_uid(int socket) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return common::fail(errno_text("SO_PEERCRED"));
  }
  return static_cast<unsigned>(cred.uid);
}

common::Result<std::string> parse_upgrade_command(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (line == "upgrade") return std::string();
  if (!line.starts_with("upgrade ")) {
    return common::fail("unknown command \"" + printable(line) + "\" (this socket knows: upgrade)");
  }
  const std::string_view binary = line.substr(8);
  if (binary.empty() || binary.front() != '/') {
    return common::fail("the binary must be an absolute path: \"" + printable(binary) + "\"");
  }
  for (const char c : binary) {
    if (c < 0x20 || c == 0x7f) return common::fail("the binary's path has a control character");
  }
  return std::string(binary);
}

}  // namespace tunnel::core::upgrade
