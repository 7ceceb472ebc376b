// Mapping and atomics for the generation page. Everything here is mechanism:
// the TypeScript side decides defaults, paths and how errors read.
#include "page.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "sigbus_guard.h"

namespace token_shadow {

const uint8_t kMagic[kMagicSize] = {0xea, 0xf3, 0xca, 0x65,
                                    0xeb, 0x46, 0x00, 0x5a};

namespace {

struct OpenOptions {
  bool create = false;
  bool read_only = false;
  bool make_dir = false;
  mode_t mode = 0660;
  mode_t dir_mode = 0770;
  gid_t gid = static_cast<gid_t>(-1);
};

// A failure carries a stable code for TypeScript plus the errno, if any.
struct Failure {
  std::string code;
  std::string detail;
  int err = 0;
};

Failure Errno(const char* what) {
  int e = errno;
  // Opening a directory read-write fails with EISDIR: it is not a regular file.
  const char* name = e == EISDIR   ? "ENOTREG"
                     : e == ENOENT ? "ENOENT"
                     : e == EACCES ? "EACCES"
                     : e == EPERM  ? "EPERM"
                     : e == ENOSPC ? "ENOSPC"
                     : e == EROFS  ? "EROFS"
                     : e == ELOOP  ? "ELOOP"
                                   : "EIO";
  return Failure{name, std::string(what) + ": " + std::strerror(e), e};
}

void Throw(Napi::Env env, const std::string& path, const Failure& f) {
  Napi::Error error = Napi::Error::New(env, f.detail);
  error.Set("code", Napi::String::New(env, f.code));
  error.Set("path", Napi::String::New(env, path));
  if (f.err != 0) error.Set("errno", Napi::Number::New(env, f.err));
  error.ThrowAsJavaScriptException();
}

std::string DirName(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Checks an open descriptor before it is mapped, so that a short file can
// never turn a later access into SIGBUS.
bool Validate(int fd, Failure* f) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    *f = Errno("fstat");
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *f = Failure{"ENOTREG", "not a regular file"};
    return false;
  }
  if (st.st_size != static_cast<off_t>(kPageSize)) {
    *f = Failure{"EBADSIZE", "size is " + std::to_string(st.st_size) +
                                 " bytes, expected " +
                                 std::to_string(kPageSize)};
    return false;
  }
  uint8_t magic[kMagicSize];
  ssize_t n = pread(fd, magic, kMagicSize, 0);
  if (n != static_cast<ssize_t>(kMagicSize)) {
    *f = n < 0 ? Errno("pread") : Failure{"EBADSIZE", "short read"};
    return false;
  }
  if (std::memcmp(magic, kMagic, kMagicSize) != 0) {
    *f = Failure{"EBADMAGIC", "wrong magic"};
    return false;
  }
  return true;
}

// Sets mode, group, size and magic on a file nobody else can see yet.
bool Initialise(int fd, const OpenOptions& o, Failure* f) {
  if (fchmod(fd, o.mode) != 0) {
    *f = Errno("fchmod");
    return false;
  }
  if (o.gid != static_cast<gid_t>(-1) && fchown(fd, -1, o.gid) != 0) {
    *f = Errno("fchown");
    return false;
  }
  if (ftruncate(fd, kPageSize) != 0) {
    *f = Errno("ftruncate");
    return false;
  }
  if (pwrite(fd, kMagic, kMagicSize, 0) != static_cast<ssize_t>(kMagicSize)) {
    *f = Errno("pwrite");
    return false;
  }
  // Outside tmpfs a crash after the link must not leave a page without magic.
  if (fdatasync(fd) != 0) {
    *f = Errno("fdatasync");
    return false;
  }
  return true;
}

std::string RandomSuffix() {
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, ".%d.%08x", static_cast<int>(getpid()), rd());
  return buf;
}

// Creates a fully initialised page and links it at `path`. Returns the
// descriptor, -2 when another process linked one first (EEXIST), or -1.
int CreateLinked(const std::string& path, const OpenOptions& o, Failure* f) {
  std::string dir = DirName(path);
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) {
    if (!Initialise(fd, o, f)) {
      close(fd);
      return -1;
    }
    // linkat(fd, "", ..., AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the
    // /proc form works for unprivileged processes too.
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    if (linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(),
               AT_SYMLINK_FOLLOW) == 0)
      return fd;
    int e = errno;
    close(fd);
    if (e == EEXIST) return -2;
    if (e != ENOENT) {  // ENOENT: no /proc; fall back to a named temp file
      errno = e;
      *f = Errno("linkat");
      return -1;
    }
  } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    *f = Errno("open O_TMPFILE");
    return -1;
  }

  std::string tmp = path + RandomSuffix() + ".tmp";
  fd = open(tmp.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW,
            0600);
  if (fd < 0) {
    *f = Errno("open temp file");
    return -1;
  }
  if (!Initialise(fd, o, f)) {
    unlink(tmp.c_str());
    close(fd);
    return -1;
  }
  int rc = link(tmp.c_str(), path.c_str());
  int e = errno;
  unlink(tmp.c_str());
  if (rc == 0) return fd;
  close(fd);
  if (e == EEXIST) return -2;
  errno = e;
  *f = Errno("link");
  return -1;
}

// Opens (creating when asked) and validates the page; returns the fd or -1.
int OpenPage(const std::string& path, const OpenOptions& o, Failure* f) {
  if (o.make_dir) {
    std::string dir = DirName(path);
    if (mkdir(dir.c_str(), o.dir_mode) == 0) {
      // mkdir is subject to the umask; the directory mode is policy. Set on
      // the descriptor: a symlink put in its place is never followed.
      int dfd =
          open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      bool ok =
          dfd >= 0 && fchmod(dfd, o.dir_mode) == 0 &&
          (o.gid == static_cast<gid_t>(-1) || fchown(dfd, -1, o.gid) == 0);
      if (!ok) *f = Errno("chmod directory");
      if (dfd >= 0) close(dfd);
      if (!ok) return -1;
    } else if (errno != EEXIST) {
      *f = Errno("mkdir");
      return -1;
    }
  }
  // O_NOFOLLOW: the page's directory is writable by the deployment's group,
  // and root must never open what a symlink planted there points to.
  int flags =
      (o.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW;
  // A few rounds cover a page removed between our EEXIST and our open.
  for (int attempt = 0; attempt < 8; attempt++) {
    int fd = open(path.c_str(), flags | O_NONBLOCK);
    if (fd >= 0) {
      if (!Validate(fd, f)) {
        close(fd);
        return -1;
      }
      return fd;
    }
    if (errno != ENOENT || !o.create || o.read_only) {
      *f = Errno("open");
      return -1;
    }
    fd = CreateLinked(path, o, f);
    if (fd != -2) return fd;
  }
  *f = Failure{"EAGAIN", "page kept disappearing while being opened"};
  return -1;
}

OpenOptions ParseOptions(const Napi::Object& obj) {
  OpenOptions o;
  auto flag = [&](const char* key) {
    Napi::Value v = obj.Get(key);
    return v.IsBoolean() && v.As<Napi::Boolean>().Value();
  };
  o.create = flag("create");
  o.read_only = flag("readOnly");
  o.make_dir = flag("mkdir");
  Napi::Value mode = obj.Get("mode");
  if (mode.IsNumber()) o.mode = mode.As<Napi::Number>().Uint32Value() & 07777;
  Napi::Value dir_mode = obj.Get("dirMode");
  if (dir_mode.IsNumber())
    o.dir_mode = dir_mode.As<Napi::Number>().Uint32Value() & 07777;
  Napi::Value gid = obj.Get("gid");
  if (gid.IsNumber() && gid.As<Napi::Number>().Int64Value() >= 0)
    o.gid = static_cast<gid_t>(gid.As<Napi::Number>().Uint32Value());
  return o;
}

}  // namespace

Napi::Function Page::Define(Napi::Env env) {
  return DefineClass(
      env, "NativePage",
      {InstanceMethod<&Page::Load>("load"),
       InstanceMethod<&Page::Increment>("increment"),
       InstanceMethod<&Page::Close>("close"), InstanceMethod<&Page::Fd>("fd"),
       InstanceMethod<&Page::Buffer>("buffer"),
       InstanceMethod<&Page::Faulted>("faulted"),
       InstanceMethod<&Page::Lock>("lock"),
       InstanceMethod<&Page::Link>("link")});
}

Page::Page(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Page>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    Napi::TypeError::New(env, "NativePage(path, options)")
        .ThrowAsJavaScriptException();
    return;
  }
  std::string path = info[0].As<Napi::String>();
  OpenOptions o = ParseOptions(info[1].As<Napi::Object>());
  Failure f;
  int fd = OpenPage(path, o, &f);
  if (fd < 0) {
    Throw(env, path, f);
    return;
  }
  int prot = o.read_only ? PROT_READ : PROT_READ | PROT_WRITE;
  void* base = mmap(nullptr, kPageSize, prot, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    Throw(env, path, Errno("mmap"));
    close(fd);
    return;
  }
  base_ = static_cast<uint8_t*>(base);
  guard_ = GuardMapping(base_, kPageSize);
  fd_ = fd;
  writable_ = !o.read_only;
}

// Collected: no JavaScript can reach the buffer any more (only this object
// held it), so unmapping without detaching is safe and avoids JS calls here.
Page::~Page() { Unmap(false); }

void Page::Unmap(bool detach) {
  // Detach first: JavaScript views must not outlive the mapping.
  if (detach && !buffer_.IsEmpty()) {
    Napi::ArrayBuffer buffer = buffer_.Value();
    if (!buffer.IsEmpty() && !buffer.IsDetached()) buffer.Detach();
    buffer_.Reset();
  }
  UnguardMapping(guard_);
  guard_ = -1;
  if (base_ != nullptr) munmap(base_, kPageSize);
  if (fd_ >= 0) close(fd_);
  base_ = nullptr;
  fd_ = -1;
}

uint64_t* Page::SlotPointer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (base_ == nullptr) {
    Napi::Error::New(env, "generation page is closed")
        .ThrowAsJavaScriptException();
    return nullptr;
  }
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "slot must be a number")
        .ThrowAsJavaScriptException();
    return nullptr;
  }
  double slot = info[0].As<Napi::Number>().DoubleValue();
  if (!(slot >= 0 && slot < kSlotCount) ||
      slot != static_cast<double>(static_cast<uint32_t>(slot))) {
    Napi::RangeError::New(env, "slot must be an integer from 0 to " +
                                   std::to_string(kSlotCount - 1))
        .ThrowAsJavaScriptException();
    return nullptr;
  }
  return reinterpret_cast<uint64_t*>(
      base_ + kMagicSize + sizeof(uint64_t) * static_cast<size_t>(slot));
}

// Acquire pairs with the writer's release in Increment: a reader that sees
// generation N also sees everything the writer did before publishing N, so
// a cache refill started after reading N never reads the older file.
Napi::Value Page::Load(const Napi::CallbackInfo& info) {
  uint64_t* slot = SlotPointer(info);
  if (slot == nullptr) return info.Env().Undefined();
  // A BigInt: every u64 exactly (a double would round above 2^53).
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(__atomic_load_n(
                                           slot, __ATOMIC_ACQUIRE)));
}

// fetch_add with acq_rel: release so the change made before the bump is
// visible to whoever acquires the new value, acquire so that two writers'
// bumps are totally ordered and each returns a distinct new value.
Napi::Value Page::Increment(const Napi::CallbackInfo& info) {
  uint64_t* slot = SlotPointer(info);
  if (slot == nullptr) return info.Env().Undefined();
  if (!writable_) {
    Napi::Error error =
        Napi::Error::New(info.Env(), "generation page is mapped read-only");
    error.Set("code", Napi::String::New(info.Env(), "EREADONLY"));
    error.ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  uint64_t next = __atomic_add_fetch(slot, 1, __ATOMIC_ACQ_REL);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(next));
}

Napi::Value Page::Close(const Napi::CallbackInfo& info) {
  Unmap(true);
  return info.Env().Undefined();
}

// The mapping as an external ArrayBuffer, so that JavaScript can read a slot
// with Atomics.load (a few ns, inlined by the JIT) instead of a native call
// (~150 ns). Atomics.load is sequentially consistent, stronger than acquire.
// close() detaches it before unmapping. Never written through: a read-only
// mapping would fault.
Napi::Value Page::Buffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (base_ == nullptr) {
    Napi::Error::New(env, "generation page is closed")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (buffer_.IsEmpty()) {
    Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, base_, kPageSize);
    buffer_ = Napi::Persistent(buffer);
  }
  return buffer_.Value();
}

// Whether an access faulted (the file was truncated under us) and the
// mapping was replaced by a private page: it can no longer be trusted.
Napi::Value Page::Faulted(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), MappingFaulted(guard_));
}

// flock without waiting: shared while a process maps the page, exclusive to
// learn that none does. False when another holder is in the way.
Napi::Value Page::Lock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (fd_ < 0) {
    Napi::Error::New(env, "generation page is closed")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  bool exclusive = info.Length() > 0 && info[0].IsBoolean() &&
                   info[0].As<Napi::Boolean>().Value();
  if (flock(fd_, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
    return Napi::Boolean::New(env, true);
  if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
  Failure f = Errno("flock");
  Throw(env, "", f);
  return env.Undefined();
}

// A hard link to the mapped inode itself (never to whatever the page's path
// names by now). linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the
// /proc form does not. False when `path` exists already.
Napi::Value Page::Link(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (fd_ < 0 || info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "link(path) on an open page")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  std::string proc = "/proc/self/fd/" + std::to_string(fd_);
  if (linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(),
             AT_SYMLINK_FOLLOW) == 0)
    return Napi::Boolean::New(env, true);
  if (errno == EEXIST) return Napi::Boolean::New(env, false);
  Throw(env, path, Errno("linkat"));
  return env.Undefined();
}

// The descriptor lets TypeScript fstat the mapped inode (replaced-page check).
Napi::Value Page::Fd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fd_);
}

}  // namespace token_shadow
