// SIGHUP (issue 19): what of a changed configuration file the running core can apply, and what
// needs a restart (or `tunnel-core upgrade`, which re-reads the whole file without dropping a
// connection).
#pragma once

#include <string>
#include <vector>

namespace tunnel::core {

struct ConfigChanges {
  std::vector<std::string> live;     // applied on SIGHUP: "tls" (the certificates)
  std::vector<std::string> restart;  // the keys that need a restart, e.g. "listen", "accounts"
};

// Compares two YAML documents (the configuration file as the core read it, and as it is now)
// key by key at the top level. Keys the running core applies on SIGHUP
// are `live`; every other changed key is `restart`. Text that is not YAML changes nothing
// here (the configuration check reports it).
ConfigChanges compare_config_files(const std::string& before, const std::string& after);

}  // namespace tunnel::core
