// A hostile plugin attack for the sandbox test: with `action: read` it reads `path` (the event's
// sealed items), `write` writes `path` (outside its scratch folder), `connect` opens a TCP socket to
// 127.0.0.1:`port` (a listener the test runs outside), and `none` behaves (hands back the starting
// policy). A probe that succeeds hands back the starting policy too, so only the sandbox can stop it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>

#include "redteam/attack.h"
#include "trainers/plugin.h"

namespace {

posttrain::Attack probe(posttrain::YamlSection& options) {
  const std::string action = options.get<std::string>("action", "none");
  const std::string path = options.get<std::string>("path", "");
  const int port = options.get<int>("port", 0);
  options.finish();
  return [=](const posttrain::AttackInput& in) {
    if (action == "read") {
      std::ifstream file(path);
      std::string line;
      if (!file || !std::getline(file, line)) throw std::runtime_error("probe: could not read " + path);
    } else if (action == "write") {
      std::ofstream file(path);
      if (!(file << "written from the sandbox\n")) throw std::runtime_error("probe: could not write " + path);
    } else if (action == "connect") {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in address{};
      address.sin_family = AF_INET;
      address.sin_port = htons(static_cast<uint16_t>(port));
      address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      const bool connected = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
      if (fd >= 0) ::close(fd);
      if (!connected) throw std::runtime_error("probe: could not connect to 127.0.0.1:" + std::to_string(port));
    }
    posttrain::AttackOutput out;
    for (size_t item : in.eval_items) out.responses.push_back(in.start_responses[item]);
    out.policy_dir = in.policy_dir;
    return out;
  };
}

}  // namespace

POSTTRAIN_PLUGIN { posttrain::register_attack("probe", probe, {"probes its sandbox (a test plugin)"}); }
