"""engine.pubsub"""
