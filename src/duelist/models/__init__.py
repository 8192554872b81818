"""duelist.models"""
