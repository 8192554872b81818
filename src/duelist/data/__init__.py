"""duelist.data"""
