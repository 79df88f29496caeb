// File helpers: whole-file reads with clear errors, atomic writes, sha256 digests.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace posttrain {

// Reads a whole file; UserError naming the path if it is missing or unreadable.
std::string read_file(const std::string& path);

// Writes to "<path>.tmp" then renames, so a reader never sees a half-written file. A failed write
// (disk full, read-only folder) removes the .tmp and throws UserError naming `path` and the cause.
void write_file_atomic(const std::string& path, std::string_view content);
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

// Removes `path` (a folder being written, e.g. "<dir>.partial") if the scope is left by an
// exception, so a failed save frees its space and never leaves half a checkpoint behind.
class RemoveOnUnwind {
 public:
  explicit RemoveOnUnwind(std::string path) : path_(std::move(path)), exceptions_(std::uncaught_exceptions()) {}
  ~RemoveOnUnwind();
  RemoveOnUnwind(const RemoveOnUnwind&) = delete;
  RemoveOnUnwind& operator=(const RemoveOnUnwind&) = delete;

 private:
  std::string path_;
  int exceptions_;
};

// Lower-case hex sha256 of bytes / of a file's contents (streamed, so large files are fine).
std::string sha256_hex(std::string_view bytes);
std::string sha256_file(const std::string& path);

// Training allocates and frees tensors of tens of MB every step (embedding gradients, LM-head
// chunks, optimizer temporaries). glibc serves those with fresh mmaps that the kernel zero-fills page
// by page: on CPU half the time went to page faults. This keeps them on the (untrimmed) heap.
// Call once at the start of main().
void keep_large_allocations_on_heap();

}  // namespace posttrain
