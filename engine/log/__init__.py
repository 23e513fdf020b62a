"""engine.log"""
