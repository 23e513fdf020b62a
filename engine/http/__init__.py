"""engine.http"""
