"""engine.client"""
