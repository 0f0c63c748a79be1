// tunnelctl: see src/ctl/cli.hpp for the command line.
#include "ctl/cli.hpp"

int main(int argc, char** argv) {
  return tunnel::ctl::run_cli(argc, argv);
}
