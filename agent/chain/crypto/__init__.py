"""Key and address primitives for Cosmos accounts, in pure Python over audited libraries.

- `bip39`: mnemonics and their seeds (the `mnemonic` package's English word list, PBKDF2 from `hashlib`).
- `bip32`: hierarchical deterministic derivation of secp256k1 keys (`m/44'/118'/0'/0/0` for Cosmos accounts).
- `secp256k1`: compressed public keys, deterministic (RFC 6979) low-S signatures and verification (`coincurve`).
- `bech32`: BIP173 encoding of addresses (`sei1...`, `seivaloper1...`).
- `evm`: Keccak-256 (`pycryptodome`), Ethereum addresses and their EIP-55 checksums.

Nothing here touches files, logs or the network; callers decide where keys live.
"""
