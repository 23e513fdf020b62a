"""engine.sync"""
