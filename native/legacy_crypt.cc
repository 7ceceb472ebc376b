// Legacy crypt(3) hashes ($5$, $6$, $y$) through the system's libxcrypt.
// crypt_r keeps its state in the caller's buffer, so pool threads can call
// it concurrently.
#include "legacy_crypt.h"

#include <crypt.h>
#include <openssl/crypto.h>

#include <cstring>
#include <memory>
#include <string>

namespace token_shadow {

namespace {

// crypt_r reports failure as NULL or a string starting with '*'.
bool Usable(const char* out) { return out != nullptr && out[0] != '*'; }

// crypt_r takes C strings: a NUL inside the phrase or the setting would cut it
// short, so that "secret\0anything" verified as "secret". Such input fails.
bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

// cryptHash(phrase, setting) -> string | null: hashes with a full setting
// (prefix and salt), as Proxmox does when it writes a hash.
Napi::Value CryptHash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "cryptHash(phrase, setting)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string phrase = info[0].As<Napi::String>();
  std::string setting = info[1].As<Napi::String>();
  auto data = std::make_unique<crypt_data>();
  const char* out = HasNul(phrase) || HasNul(setting)
                        ? nullptr
                        : crypt_r(phrase.c_str(), setting.c_str(), data.get());
  Napi::Value result = Usable(out) ? Napi::String::New(env, out) : env.Null();
  explicit_bzero(&phrase[0], phrase.size());
  explicit_bzero(data.get(), sizeof(crypt_data));
  return result;
}

// cryptVerify(phrase, hash) -> boolean, comparing in constant time.
Napi::Value CryptVerify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    Napi::TypeError::New(env, "cryptVerify(phrase, hash)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string phrase = info[0].As<Napi::String>();
  std::string hash = info[1].As<Napi::String>();
  auto data = std::make_unique<crypt_data>();
  const char* out = HasNul(phrase) || HasNul(hash)
                        ? nullptr
                        : crypt_r(phrase.c_str(), hash.c_str(), data.get());
  bool ok = Usable(out) && std::strlen(out) == hash.size() &&
            CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  explicit_bzero(&phrase[0], phrase.size());
  explicit_bzero(data.get(), sizeof(crypt_data));
  return Napi::Boolean::New(env, ok);
}

// cryptGensalt(prefix, count) -> setting | null, random salt from the OS.
Napi::Value CryptGensalt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "cryptGensalt(prefix, count)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string prefix = info[0].As<Napi::String>();
  unsigned long count = info[1].As<Napi::Number>().Uint32Value();
  char out[CRYPT_GENSALT_OUTPUT_SIZE];
  const char* s =
      crypt_gensalt_rn(prefix.c_str(), count, nullptr, 0, out, sizeof out);
  return Usable(s) ? Napi::String::New(env, s) : env.Null();
}

}  // namespace

void InitCrypt(Napi::Env env, Napi::Object exports) {
  exports.Set("cryptHash", Napi::Function::New<CryptHash>(env, "cryptHash"));
  exports.Set("cryptVerify",
              Napi::Function::New<CryptVerify>(env, "cryptVerify"));
  exports.Set("cryptGensalt",
              Napi::Function::New<CryptGensalt>(env, "cryptGensalt"));
}

}  // namespace token_shadow
