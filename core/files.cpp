#include "core/files.h"

#include <malloc.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "core/error.h"

namespace posttrain {

std::string read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) fail(path, "is a folder, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open file (") + std::strerror(errno) + ")");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "read error");
  return content;
}

void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp";
  const auto give_up = [&](const std::string& what) {
    const std::string cause = errno != 0 ? std::strerror(errno) : "unknown cause";
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    fail(path, what + " (" + cause + ")");
  };
  if (std::filesystem::is_directory(path)) fail(path, "is a folder; cannot write a file there");
  {
    errno = 0;
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) give_up("cannot create file");
    write(out);
    out.flush();
    if (!out) give_up("write failed");
    out.close();
    if (out.fail()) give_up("write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) give_up("cannot rename from .tmp");
}

void write_file_atomic(const std::string& path, std::string_view content) {
  write_file_atomic(
      path, [&](std::ostream& out) { out.write(content.data(), static_cast<std::streamsize>(content.size())); });
}

RemoveOnUnwind::~RemoveOnUnwind() {
  if (std::uncaught_exceptions() <= exceptions_) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

namespace {

struct DigestDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  void update(const void* data, size_t size) { EVP_DigestUpdate(ctx_.get(), data, size); }
  std::string hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &length);
    static const char* kHex = "0123456789abcdef";
    std::string out;
    for (unsigned int i = 0; i < length; ++i) {
      out += kHex[digest[i] >> 4];
      out += kHex[digest[i] & 15];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, DigestDeleter> ctx_;
};

}  // namespace

void keep_large_allocations_on_heap() {
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 sha;
  sha.update(bytes.data(), bytes.size());
  return sha.hex();
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open file (") + std::strerror(errno) + ")");
  Sha256 sha;
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    sha.update(buffer.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) fail(path, "read error");
  return sha.hex();
}

}  // namespace posttrain
