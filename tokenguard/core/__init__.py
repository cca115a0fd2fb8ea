"""tokenguard/core"""
