#include "core/ledger.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>

#include "core/error.h"
#include "core/files.h"

namespace posttrain {

const char* const kLedgerGenesis = "0000000000000000000000000000000000000000000000000000000000000000";

namespace {

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The file descriptor of the ledger, opened for appending and locked exclusively until destroyed,
// so two writers (two terminals, a judge and a participant) never interleave or fork the chain.
class LockedLedger {
 public:
  explicit LockedLedger(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) fail(path, std::string("cannot open the ledger for appending (") + std::strerror(errno) + ")");
    if (::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fail(path, std::string("cannot lock the ledger (") + std::strerror(errno) + ")");
    }
  }
  ~LockedLedger() { ::close(fd_); }  // closing releases the lock
  LockedLedger(const LockedLedger&) = delete;
  LockedLedger& operator=(const LockedLedger&) = delete;

  void write_line(const std::string& line) {
    size_t written = 0;
    while (written < line.size()) {
      const ssize_t n = ::write(fd_, line.data() + written, line.size() - written);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(path_, std::string("cannot append to the ledger (") + std::strerror(errno) + ")");
      written += static_cast<size_t>(n);
    }
    if (::fsync(fd_) != 0) fail(path_, std::string("cannot sync the ledger (") + std::strerror(errno) + ")");
  }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace

std::string ledger_entry_hash(const nlohmann::json& entry) {
  nlohmann::json body = entry;
  body.erase("hash");
  return sha256_hex(body.dump());  // nlohmann's objects keep keys sorted: one canonical text
}

std::vector<nlohmann::json> read_ledger(const std::string& path) {
  std::vector<nlohmann::json> entries;
  std::ifstream in(path, std::ios::binary);
  if (!in) return entries;
  std::string line, prev = kLedgerGenesis;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    const std::string where = path + ":" + std::to_string(number);
    nlohmann::json entry;
    try {
      entry = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      fail(where, "not a ledger line (not valid JSON: edited, or a write cut short)");
    }
    if (!entry.is_object() || !entry.contains("hash") || !entry["hash"].is_string() || !entry.contains("prev") ||
        !entry.contains("seq"))
      fail(where, "not a ledger line (it needs seq, prev and hash)");
    if (entry["seq"] != number - 1)
      fail(where, "sequence number " + entry["seq"].dump() + " where " + std::to_string(number - 1) +
                      " belongs: a line before it was removed or inserted");
    if (entry["prev"] != prev)
      fail(where,
           "does not follow the line before it (prev is not that line's hash): a line before it was "
           "edited, removed or inserted");
    if (ledger_entry_hash(entry) != entry["hash"].get<std::string>())
      fail(where, "was edited after it was written (its content does not match its hash)");
    prev = entry["hash"].get<std::string>();
    entries.push_back(std::move(entry));
  }
  return entries;
}

nlohmann::json append_ledger(const std::string& path, const nlohmann::json& record) {
  if (!record.is_object()) throw std::invalid_argument("append_ledger: the record must be a JSON object");
  for (const char* reserved : {"seq", "time", "prev", "hash"})
    if (record.contains(reserved))
      throw std::invalid_argument(std::string("append_ledger: the record may not set ") + reserved);
  LockedLedger locked(path);
  const std::vector<nlohmann::json> entries = read_ledger(path);  // under the lock: no one appends meanwhile
  nlohmann::json entry = record;
  entry["seq"] = entries.size();
  entry["time"] = utc_now();
  entry["prev"] = entries.empty() ? std::string(kLedgerGenesis) : entries.back()["hash"].get<std::string>();
  entry["hash"] = ledger_entry_hash(entry);
  locked.write_line(entry.dump() + "\n");
  return entry;
}

}  // namespace posttrain
