"""ttrl.daemon"""
