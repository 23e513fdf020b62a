"""engine.keyspace"""
