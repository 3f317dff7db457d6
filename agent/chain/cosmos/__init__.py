"""Cosmos SDK formats the genesis ceremony needs, in pure Python (no `seid`).

- `proto`: a gogoproto-exact protobuf codec and proto-JSON for the transaction and staking messages.
- `address`: account / operator / consensus addresses and their `sei` Bech32 prefixes.
- `coins`: coin lists as genesis JSON holds them (sorted by denom, amounts as decimal strings).
- `gentx`: building, signing (SIGN_MODE_DIRECT) and verifying a `MsgCreateValidator` genesis transaction.
- `genesis`: reading, editing (accounts, balances, supply, EVM associations, gen_txs, validators) and writing
  `genesis.json`.
- `keystore`: the validator account key file kept in the pod.
- `artifacts`: the S3 layout of the ceremony and the public identity document each node publishes.
"""
