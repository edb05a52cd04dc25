"""OpenStack provider (flavor type ``vm``): ``driver.py`` (the driver), ``connection.py``
(clouds.yaml and shared connections), ``errors.py`` (failure translation), ``userdata.py``
(cloud-init user data)."""
