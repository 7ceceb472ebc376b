// The keyed digest behind the verified-secret cache: SHA-256 over a random
// per-process key followed by the secret. The cache keeps only this digest,
// never the secret, and the key never leaves native memory. It lives here
// rather than in node:crypto because the fast path must stay well under a
// microsecond: createHmac costs microseconds and allocates per call.
#include "digest.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
#include <mutex>
#include <string>

namespace token_shadow {

namespace {

constexpr size_t kDigestSize = SHA256_DIGEST_LENGTH;  // 32
constexpr size_t kInlineSecret = 256;

SHA256_CTX keyed_prefix;  // state after absorbing the key; copied per call
std::once_flag key_once;
bool key_ok = false;

// A key of one full SHA-256 block: the prefix state then has the key already
// compressed, and a UUID secret costs a single compression per call.
void InitKey() {
  unsigned char key[SHA256_CBLOCK];
  key_ok = RAND_bytes(key, sizeof key) == 1;
  SHA256_Init(&keyed_prefix);
  SHA256_Update(&keyed_prefix, key, sizeof key);
  OPENSSL_cleanse(key, sizeof key);
}

// Reads the target slice of a Uint8Array and the secret's UTF-8 bytes, then
// computes the digest into `out`. Returns false after throwing.
bool Compute(const Napi::CallbackInfo& info, uint8_t** slice,
             uint8_t out[kDigestSize]) {
  napi_env env = info.Env();
  std::call_once(key_once, InitKey);
  if (!key_ok) {
    Napi::Error::New(env, "no random key for the digest")
        .ThrowAsJavaScriptException();
    return false;
  }
  // Type checks come from the status of each N-API call: one call per
  // argument on the hot path instead of a typeof call and then a getter.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  double offset = -1;
  if (info.Length() < 3 ||
      napi_get_typedarray_info(env, info[0], &type, &length, &data, nullptr,
                               nullptr) != napi_ok ||
      napi_get_value_double(env, info[1], &offset) != napi_ok) {
    Napi::TypeError::New(env, "(slab: Uint8Array, offset: number, secret)")
        .ThrowAsJavaScriptException();
    return false;
  }
  if (type != napi_uint8_array || !(offset >= 0) ||
      offset + kDigestSize > static_cast<double>(length) ||
      offset != static_cast<double>(static_cast<size_t>(offset))) {
    Napi::RangeError::New(env, "digest slot outside the slab")
        .ThrowAsJavaScriptException();
    return false;
  }
  *slice = static_cast<uint8_t*>(data) + static_cast<size_t>(offset);

  char inline_buf[kInlineSecret];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, info[2], inline_buf, sizeof inline_buf,
                                 &len) != napi_ok) {
    Napi::TypeError::New(env, "secret must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  SHA256_CTX ctx = keyed_prefix;
  if (len < kInlineSecret - 1) {
    SHA256_Update(&ctx, inline_buf, len);
  } else {  // possibly truncated: fetch the whole string
    napi_get_value_string_utf8(env, info[2], nullptr, 0, &len);
    std::string whole(len + 1, '\0');
    napi_get_value_string_utf8(env, info[2], &whole[0], whole.size(), &len);
    SHA256_Update(&ctx, whole.data(), len);
    OPENSSL_cleanse(&whole[0], whole.size());
  }
  SHA256_Final(out, &ctx);
  OPENSSL_cleanse(inline_buf,
                  len < sizeof inline_buf ? len : sizeof inline_buf);
  OPENSSL_cleanse(&ctx, sizeof ctx);
  return true;
}

// digestInto(slab, offset, secret): stores the digest at slab[offset..+32].
Napi::Value DigestInto(const Napi::CallbackInfo& info) {
  uint8_t* slice;
  uint8_t out[kDigestSize];
  if (Compute(info, &slice, out)) std::memcpy(slice, out, kDigestSize);
  OPENSSL_cleanse(out, sizeof out);
  return info.Env().Undefined();
}

// digestEquals(slab, offset, secret): constant-time compare with the stored
// digest, so the comparison leaks nothing about how much matched.
Napi::Value DigestEquals(const Napi::CallbackInfo& info) {
  uint8_t* slice;
  uint8_t out[kDigestSize];
  if (!Compute(info, &slice, out)) return info.Env().Undefined();
  bool equal = CRYPTO_memcmp(slice, out, kDigestSize) == 0;
  OPENSSL_cleanse(out, sizeof out);
  return Napi::Boolean::New(info.Env(), equal);
}

}  // namespace

void InitDigest(Napi::Env env, Napi::Object exports) {
  exports.Set("digestInto", Napi::Function::New<DigestInto>(env, "digestInto"));
  exports.Set("digestEquals",
              Napi::Function::New<DigestEquals>(env, "digestEquals"));
  exports.Set("digestSize", Napi::Number::New(env, kDigestSize));
}

}  // namespace token_shadow
