// tunnel-core: see src/core/cli.hpp for the command line.
#include "core/cli.hpp"

int main(int argc, char** argv) {
  return tunnel::core::run_cli(argc, argv);
}
