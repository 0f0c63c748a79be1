// PostgresCluster (test_backends.hpp): a throwaway PostgreSQL 15 cluster for the store's tests.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "core/control/store/test_backends.hpp"

namespace tunnel::core::store {
namespace {

std::string pg_bin() {
  if (const char* dir = std::getenv("TUNNEL_PG_BIN")) return dir;
  return "/usr/lib/postgresql/15/bin";
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &size) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

std::string PostgresBackend::unavailable() {
  const std::string initdb = pg_bin() + "/initdb";
  if (::access(initdb.c_str(), X_OK) != 0) {
    return "PostgreSQL is not installed (no " + initdb +
           "): the PostgreSQL store tests are skipped; scripts/install-deps.sh installs it";
  }
  return PostgresCluster::get().error();
}

PostgresCluster& PostgresCluster::get() {
  static PostgresCluster cluster;
  return cluster;
}

PostgresCluster::PostgresCluster() : bin_(pg_bin()) {
  dir_ = make_temp_dir();
  if (dir_.empty()) {
    error_ = "cannot make a temp dir for the PostgreSQL cluster";
    return;
  }
  // initdb refuses to run as root: run the server as the postgres user then.
  std::string as;
  if (::geteuid() == 0) {
    const passwd* pw = ::getpwnam("postgres");
    if (!pw) {
      error_ = "running as root and there is no postgres user to run PostgreSQL as";
      return;
    }
    if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      error_ = "cannot give " + dir_ + " to the postgres user";
      return;
    }
    as = "runuser -u postgres -- ";
  }
  port_ = free_port();
  const std::string data = dir_ + "/data";
  const std::string log = dir_ + "/log";
  const std::string init = as + bin_ + "/initdb -D " + data +
                           " -U tunnel --auth=trust -E UTF8 --no-sync >" + log + " 2>&1";
  if (std::system(init.c_str()) != 0) {
    error_ = "initdb failed (log in " + log + ")";
    return;
  }
  // The server's own log: written by the server's user, so not the file this process made.
  const std::string start = as + bin_ + "/pg_ctl -D " + data + " -l " + data + "/server.log" +
                            " -w -o \"-p " + std::to_string(port_) + " -k " + dir_ +
                            " -c listen_addresses=127.0.0.1 -c fsync=off\" start >>" + log +
                            " 2>&1";
  if (std::system(start.c_str()) != 0) {
    error_ = "pg_ctl start failed (log in " + log + ")";
    return;
  }
  started_ = true;
  user_ = as;
}

PostgresCluster::~PostgresCluster() {
  if (started_) {
    const std::string stop =
        user_ + bin_ + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop >/dev/null 2>&1";
    [[maybe_unused]] int rc = std::system(stop.c_str());
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string PostgresCluster::new_database() {
  const std::string name = "t" + std::to_string(::getpid()) + "_" + std::to_string(next_++);
  const std::string base = "postgresql://tunnel@127.0.0.1:" + std::to_string(port_) + "/";
  auto admin = open_postgres(base + "postgres");
  if (admin) [[maybe_unused]]
    auto s = admin.value()->exec_script("CREATE DATABASE " + name);
  return base + name;
}

}  // namespace tunnel::core::store
