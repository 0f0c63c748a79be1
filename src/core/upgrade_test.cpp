#include "core/upgrade.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

namespace tunnel::core::upgrade {
namespace {

using namespace std::chrono_literals;

// A socket listening on a free loopback port (or a bound udp one); closed at the end.
struct Bound {
  int fd = -1;
  std::uint16_t port = 0;
  explicit Bound(int type) {
    fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    if (type == SOCK_STREAM) {
      EXPECT_EQ(::listen(fd, 4), 0);
    }
    socklen_t len = sizeof(a);
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port = ntohs(a.sin_port);
  }
  ~Bound() { ::close(fd); }
  Bound(const Bound&) = delete;
  Bound& operator=(const Bound&) = delete;
};

struct Pair {
  std::array<int, 2> fd{-1, -1};
  Pair() { ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fd.data()); }
  ~Pair() {
    for (const int f : fd) {
      if (f >= 0) ::close(f);
    }
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
};

// One message with these descriptors attached.
bool send_with(int socket, std::string line, const std::vector<int>& fds) {
  iovec iov{line.data(), line.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return ::sendmsg(socket, &msg, 0) > 0;
}

TEST(CoreUpgrade, TheManifestReadsBackWhatWasWritten) {
  const auto count = parse_header(format_header(12));
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(count.value(), 12u);
  for (const Role role : {Role::kAgents, Role::kAgentsPlain, Role::kHttp, Role::kHttps,
                          Role::kAdmin, Role::kApi, Role::kTcp, Role::kUdp}) {
    const auto entry = parse_entry(format_entry({role, 8443, -1}));
    ASSERT_TRUE(entry) << entry.error().message;
    EXPECT_EQ(entry.value().role, role);
    EXPECT_EQ(entry.value().port, 8443);
  }
  EXPECT_TRUE(parse_entry("control 0"));
}

TEST(CoreUpgrade, ABadManifestIsRefusedNamingTheProblem) {
  EXPECT_FALSE(parse_header(""));
  EXPECT_FALSE(parse_header("tunnel-core-handoff"));
  const auto version = parse_header("tunnel-core-handoff 2 3");
  ASSERT_FALSE(version);
  EXPECT_NE(version.error().message.find("version"), std::string::npos);
  EXPECT_FALSE(parse_header("tunnel-core-handoff 1 4097"));  // over kMaxEntries
  EXPECT_FALSE(parse_header("tunnel-core-handoff 1 -1"));
  EXPECT_FALSE(parse_header("tunnel-core-handoff 1 99999999999999999999999"));
  EXPECT_FALSE(parse_header("something-else 1 3"));
  EXPECT_FALSE(parse_entry("http"));
  EXPECT_FALSE(parse_entry("http 0"));
  EXPECT_FALSE(parse_entry("http 65536"));
  EXPECT_FALSE(parse_entry("http 80x"));
  EXPECT_FALSE(parse_entry("control 80"));
  EXPECT_FALSE(parse_entry("smtp 25"));
  EXPECT_FALSE(parse_entry(std::string(300, 'a')));
}

TEST(CoreUpgrade, ListenersCrossTheSocketAndAreTheSameSockets) {
  Bound http(SOCK_STREAM), agents(SOCK_STREAM), udp(SOCK_DGRAM);
  Pair pair;
  const std::vector<Entry> sent{
      {Role::kHttp, http.port, http.fd},
      {Role::kAgents, agents.port, agents.fd},
      {Role::kUdp, udp.port, udp.fd},
  };
  ASSERT_TRUE(send_handoff(pair.fd[0], sent));
  auto received = receive_handoff(pair.fd[1], 2s);
  ASSERT_TRUE(received) << received.error().message;
  ASSERT_EQ(received.value().size(), 3u);
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(received.value()[i].role, sent[i].role);
    EXPECT_EQ(received.value()[i].port, sent[i].port);
    EXPECT_NE(received.value()[i].fd, sent[i].fd);  // a new descriptor, the same socket
    EXPECT_TRUE(check_descriptor(received.value()[i]));
  }
  close_all(received.value());
  EXPECT_EQ(received.value()[0].fd, -1);
}

TEST(CoreUpgrade, ADescriptorThatIsNotWhatItsEntrySaysIsRefused) {
  Bound http(SOCK_STREAM), udp(SOCK_DGRAM);
  std::array<int, 2> pipe_fds{};
  ASSERT_EQ(::pipe(pipe_fds.data()), 0);
  struct Case {
    Entry entry;
    const char* says;
  };
  const std::vector<Case> cases{
      {{Role::kHttp, http.port, pipe_fds[0]}, "not a socket"},
      {{Role::kHttp, static_cast<std::uint16_t>(http.port + 1), http.fd}, "bound to port"},
      {{Role::kTcp, udp.port, udp.fd}, "type differs"},
      {{Role::kUdp, http.port, http.fd}, "type differs"},
      {{Role::kControl, 0, http.fd}, "type differs"},
  };
  for (const auto& c : cases) {
    Pair pair;
    ASSERT_TRUE(send_handoff(pair.fd[0], {c.entry}));
    const auto received = receive_handoff(pair.fd[1], 2s);
    ASSERT_FALSE(received) << format_entry(c.entry);
    EXPECT_NE(received.error().message.find(c.says), std::string::npos) << received.error().message;
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(CoreUpgrade, AMessageWithTooManyDescriptorsOrNoneOrGarbageIsRefused) {
  Bound http(SOCK_STREAM);
  {
    // The header says two, one comes, then the other end closes.
    Pair pair;
    ASSERT_TRUE(send_line(pair.fd[0], format_header(2)));
    ASSERT_TRUE(send_with(pair.fd[0], "http " + std::to_string(http.port), {http.fd}));
    ::close(pair.fd[0]);
    pair.fd[0] = -1;
    const auto received = receive_handoff(pair.fd[1], 2s);
    ASSERT_FALSE(received);
  }
  {
    // An entry without its descriptor.
    Pair pair;
    ASSERT_TRUE(send_line(pair.fd[0], format_header(1)));
    ASSERT_TRUE(send_line(pair.fd[0], "http 80"));
    const auto received = receive_handoff(pair.fd[1], 2s);
    ASSERT_FALSE(received);
    EXPECT_NE(received.error().message.find("without a descriptor"), std::string::npos);
  }
  {
    // Five descriptors in one message: refused, none left open here.
    Pair pair;
    ASSERT_TRUE(send_line(pair.fd[0], format_header(1)));
    ASSERT_TRUE(send_with(pair.fd[0], "http " + std::to_string(http.port),
                          {http.fd, http.fd, http.fd, http.fd, http.fd}));
    const auto received = receive_handoff(pair.fd[1], 2s);
    ASSERT_FALSE(received);
  }
  {
    // A message over the bound, and silence.
    Pair pair;
    ASSERT_TRUE(send_line(pair.fd[0], std::string(kMaxMessage + 100, 'x')));
    EXPECT_FALSE(receive_handoff(pair.fd[1], 2s));
    Pair quiet;
    const auto silent = receive_handoff(quiet.fd[1], 50ms);
    ASSERT_FALSE(silent);
    EXPECT_NE(silent.error().message.find("timed out"), std::string::npos);
  }
}

TEST(CoreUpgrade, ThePeersUidIsOurs) {
  Pair pair;
  const auto uid = peer_uid(pair.fd[1]);
  ASSERT_TRUE(uid) << uid.error().message;
  EXPECT_EQ(uid.value(), ::geteuid());
}

TEST(CoreUpgrade, TheControlSocketsCommand) {
  EXPECT_EQ(parse_upgrade_command("upgrade").value(), "");
  EXPECT_EQ(parse_upgrade_command("upgrade\n").value(), "");
  EXPECT_EQ(parse_upgrade_command("upgrade /usr/bin/tunnel-core").value(), "/usr/bin/tunnel-core");
  EXPECT_FALSE(parse_upgrade_command("upgrade relative/path"));
  EXPECT_FALSE(parse_upgrade_command("upgrade /bin/x\ny"));
  EXPECT_FALSE(parse_upgrade_command("shutdown"));
  EXPECT_FALSE(parse_upgrade_command(""));
}

}  // namespace
}  // namespace tunnel::core::upgrade
