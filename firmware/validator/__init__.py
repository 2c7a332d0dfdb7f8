# The validator application: pure logic and storage, no pins. Boards wire it to hardware.
