"""etcd v3 API stubs, generated from etcd's own .proto files (see README.md)."""
