"""tokenguard/web"""
